"""Row sharding (backend="ray", sharding="rows") against one process and
against sample sharding, on a loopback cluster of two 1-CPU nodes that this
script starts and stops (as benches/bench_ray.py does):

    python benches/bench_ray_rows.py                 # N = 200,000, D = 64, 20,000 samples
    python benches/bench_ray_rows.py --rows 1000000 --samples 50000
    python benches/bench_ray_rows.py --smoke         # toy size, < 1 minute

Calls, interleaved --repeats (1) times after an untimed warm-up, all on the
same float16 mixture pool (benches/_scale_data.py) and samples:
- cpu/1, cpu/2: the Rust engine in this process with 1 and 2 threads (the
  references);
- rows/1: one worker holding every row (1 CPU);
- rows/2: two workers, one per node (1 CPU each), half the rows each;
- samples/2: sample sharding with two workers (1 CPU each).
Printed: wall seconds (medians), microseconds per sample, the ratios
rows/2 : cpu/2 (the price of row sharding on the same cores), rows/2 :
samples/2, and the row-sharding efficiency t(rows/1) / (2 t(rows/2)). Every
Ray run's scores are compared (SHA-256) with cpu/2's: they must be equal.
The machine is shared: the CPU model and load averages are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

# Sets Ray's environment and puts this checkout's package first on the path.
from bench_ray import LoopbackCluster, cpu_model, digest, load

# isort: split
import zcore_fast
from _scale_data import count, ensure_mixture


def timed(label: str, path: Path, samples: int, redund_nn: int, **kw: Any) -> dict:
    """One call: wall seconds, the scores' digest and the load average."""
    before = load()
    start = time.perf_counter()
    scores = zcore_fast.score(path, n_sample=samples, redund_nn=redund_nn, seed=3, **kw)
    wall = time.perf_counter() - start
    print(f"  {label:<10} {wall:8.2f} s  load {before:.2f}-{load():.2f}", flush=True)
    return {"label": label, "wall": wall, "digest": digest(scores)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=count, default=200_000, help="N (default 200,000)")
    ap.add_argument("--dims", type=int, default=64, help="D (default 64)")
    ap.add_argument("--samples", type=count, default=20_000, help="samples per call")
    ap.add_argument("--redund-nn", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="N = 20,000, 2,000 samples")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/zcore-bench"))
    args = ap.parse_args()
    if args.smoke:
        args.rows, args.samples = 20_000, 2_000
    args.workdir.mkdir(parents=True, exist_ok=True)
    path, _ = ensure_mixture(args.workdir, args.rows, args.dims)
    print(f"CPU: {cpu_model()}; pool {args.rows:,} x {args.dims} float16, {args.samples:,} "
          f"samples, redund_nn {args.redund_nn}")  # fmt: skip
    cluster = LoopbackCluster([1, 1])
    try:
        ray_kw = {"backend": "ray", "ray_address": cluster.address, "cache": "never"}
        calls = {
            "cpu/1": {"backend": "cpu", "threads": 1, "cache": "never"},
            "cpu/2": {"backend": "cpu", "threads": 2, "cache": "never"},
            "rows/1": {**ray_kw, "workers": 1, "sharding": "rows"},
            "rows/2": {**ray_kw, "workers": 2, "sharding": "rows"},
            "samples/2": {**ray_kw, "workers": 2},
        }
        small = max(100, args.samples // 20)
        print("warm-up (untimed):", flush=True)
        for label, kw in calls.items():
            timed(label, path, small, args.redund_nn, **kw)
        runs: dict[str, list[dict]] = {k: [] for k in calls}
        for r in range(args.repeats):
            print(f"repeat {r + 1}:", flush=True)
            order = list(calls) if r % 2 == 0 else list(reversed(calls))
            for label in order:
                runs[label].append(timed(label, path, args.samples, args.redund_nn, **calls[label]))
    finally:
        left = cluster.close()
        print(f"cluster stopped; processes left: {len(left)}")
    want = runs["cpu/2"][0]["digest"]
    same = all(c["digest"] == want for cs in runs.values() for c in cs)
    wall = {k: statistics.median(c["wall"] for c in cs) for k, cs in runs.items()}
    print(f"\n{'call':<10} {'wall s':>8} {'us/sample':>10}")
    for k, w in wall.items():
        print(f"{k:<10} {w:8.2f} {w / args.samples * 1e6:10.1f}")
    print(f"\nrows/2 : cpu/2      {wall['rows/2'] / wall['cpu/2']:.2f}x")
    print(f"rows/2 : samples/2  {wall['rows/2'] / wall['samples/2']:.2f}x")
    print(f"row-sharding efficiency t(rows/1) / (2 t(rows/2)): "
          f"{wall['rows/1'] / (2 * wall['rows/2']):.2f}")  # fmt: skip
    print(f"scores identical to cpu/2 in every run: {same}")
    if not same:
        raise SystemExit("scores differ")


if __name__ == "__main__":
    main()
