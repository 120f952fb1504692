"""Wall time of every selection method on one synthetic pool, same run.

    python benches/bench_methods.py --n 50000 --d 1280
    python benches/bench_methods.py --kmeans-n 1000000    # k-means alone at N = 10^6
    python benches/bench_methods.py --kmeans-n 1000000 --float16-file

Prints a markdown table: method, what it ran with, wall time, and the time
split into its stages where there are several. The pool is clustered float32
Gaussians (20 centres, overlapping enough that the clusters are not trivial).
ZCore runs with a reduced sample count (--zcore-n-sample) and says so; its
full-count speed is benches/bench_zcore.py's subject.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from zcore_fast.methods import METHODS, run_method
from zcore_fast.methods.kmeans import kmeans


def pool(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n x d float32: 20 Gaussian clusters, drawn in blocks (no float64 copy)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d), dtype=np.float32) * 0.5
    x = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 65_536):
        hi = min(n, lo + 65_536)
        rng.standard_normal(out=x[lo:hi], dtype=np.float32)
        x[lo:hi] += centres[rng.integers(0, 20, hi - lo)]
    return x


def bench_methods(args: argparse.Namespace) -> None:
    x = pool(args.n, args.d)
    options = {
        "zcore": {"n_sample": args.zcore_n_sample},
        "moderate": {},
        "elfs": {},
        "ccs": {"n_sample": args.zcore_n_sample},
        "random": {},
    }
    print(f"N = {args.n:,}, D = {args.d:,}, budget = {args.budget}, {os.cpu_count()} cores")
    print(f"load average before: {os.getloadavg()[0]:.1f} (other work on the machine)\n")
    print("| method | ran with | wall (s) | CPU (s) |")
    print("|---|---|---|---|")
    for method in args.methods:
        start, cpu = time.perf_counter(), time.process_time()
        sel = run_method(method, x, args.budget, seed=0, **options[method])
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"| {method} | {describe(method, sel.params)} | {wall:.1f} | {cpu:.1f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


def describe(method: str, p: dict) -> str:
    """The parameters that decide a method's cost, in a few words."""
    if method in ("zcore", "ccs") and "n_sample" in p:
        text = f"n_sample {p['n_sample']:,} (paper: 10^6)"
        return text if method == "zcore" else f"CCS over ZCore, {text}, 50 strata"
    if method == "moderate":
        return f"k-means k={p['clusters']} ({p['kmeans_iterations']} iterations), medians"
    if method == "elfs":
        return (
            f"k-means k={p['clusters']} ({p['kmeans_iterations']} it.), linear proxy "
            f"{p['epochs']} epochs on {p['device']}, beta search over 6 (chose {p['beta']:g})"
        )
    return "seeded permutation"


def bench_kmeans(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    x = pool(args.kmeans_n, args.d)
    made = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        source: np.ndarray | str = x
        if args.float16_file:
            # A float16 .npy, memory-mapped and converted block by block.
            source = os.path.join(tmp, "pool.npy")
            np.save(source, x.astype(np.float16))
            del x
        start = time.perf_counter()
        result = kmeans(source, args.clusters, seed=0)
        wall = time.perf_counter() - start
    kind = "float16 .npy memmap" if args.float16_file else "float32 in memory"
    print(f"(pool generated in {made:.0f} s; k-means input: {kind}; ", end="")
    print(f"load average {os.getloadavg()[0]:.1f})\n")
    print("| N | D | k | iterations | converged | wall (s) | wall / iteration (s) |")
    print("|---|---|---|---|---|---|---|")
    # The wall time includes the input check pass, seeding and the final
    # assignment pass, so wall / iteration overstates one Lloyd iteration.
    print(
        f"| {args.kmeans_n:,} | {args.d:,} | {args.clusters} | {result.n_iter} | "
        f"{result.converged} | {wall:.1f} | {wall / result.n_iter:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--zcore-n-sample", type=int, default=100_000)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument(
        "--kmeans-n", type=int, help="instead: time k-means alone on this many rows (e.g. 10^6)"
    )
    ap.add_argument("--clusters", type=int, default=10, help="k for --kmeans-n (default 10)")
    ap.add_argument(
        "--float16-file", action="store_true", help="--kmeans-n from a float16 .npy memmap"
    )
    args = ap.parse_args()
    if args.kmeans_n:
        bench_kmeans(args)
    else:
        bench_methods(args)


if __name__ == "__main__":
    main()
