"""Per-sample cost at N = 10^8 with pair indexes, against band search alone.

    python benches/bench_pairs.py                 # N = 10^8, D = 8, float16 (1.6 GB)
    python benches/bench_pairs.py --rows 1e6 --ref-samples 200   # smoke test

Why D = 8 and not the D = 64 of `bench_scale.py --huge`: what a pair index
costs per sample depends on how many samples share its pair of dimensions,
and `n_sample="auto"` at N = 10^8 draws 10^7 samples (100 N / redund_nn),
all in one batch (the engine's batches hold N / 8 samples at this size):
10^7 / 2,016 = 4,960 samples per pair at D = 64. Scoring that whole run
takes hours on 2 cores, so this benchmark keeps the density and cuts the
pairs: D = 8 has 28 pairs, and 28 x 4,960 = 138,880 samples give every pair
the samples it would get at D = 64. A sample reads only its two columns, so
D changes the per-sample cost only through that density.

Measured, all on one pool of the benchmark's Gaussian mixture (float16,
heavy-ish tails; `benches/_scale_data.py`), through the engine's column
cache, 2 threads by default:

- band search alone (`search="band"`, the engine before pair indexes):
  --ref-samples samples, minus a 2-sample run (its statistics and band
  indexes), per sample;
- the default (`search="auto"`, which builds a pair index for each pair
  whose samples would read more rows by band search than the build costs):
  the full density and half of it; their difference gives the cost of a
  sample's queries, and the rest the fixed cost of the run (statistics,
  band and pair indexes).

It prints both per-sample costs and their ratio, and projects the cost per
sample of the D = 64 run (2,016 pair indexes, 64 band indexes, 10^7
samples) from those parts. The machine is shared: load averages are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import zcore_fast
from _scale_data import count, ensure_mixture, log
from zcore_fast import _native

REDUND_NN = 1000


def timed(path: str, n_sample: int, search: str, threads: int) -> float:
    """Wall seconds of one engine run on the column cache."""
    t0 = time.perf_counter()
    _native.score(
        [path],
        n_sample=n_sample,
        sample_dim=2,
        redund_nn=REDUND_NN,
        redund_exp=4.0,
        rand_init=True,
        seed=0,
        threads=threads,
        search=search,
    )
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=count, default=10**8)
    ap.add_argument("--dims", type=int, default=8)
    ap.add_argument(
        "--per-pair",
        type=count,
        help="samples per pair of dimensions (default: n_sample='auto' at D = 64 over 2,016)",
    )
    ap.add_argument("--ref-samples", type=count, default=1000, help="band-search samples")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/zcore-bench"))
    args = ap.parse_args()
    n, d = args.rows, args.dims
    pairs = d * (d - 1) // 2
    auto = max(10**6, 100 * n // REDUND_NN)
    per_pair = args.per_pair or auto // 2016
    samples = per_pair * pairs
    args.workdir.mkdir(parents=True, exist_ok=True)
    path, gen = ensure_mixture(
        args.workdir, n, d, seed=0, clusters=1000, threads=args.threads, log=log
    )
    if gen is not None:
        log(f"generated {path.name} in {gen:.1f} s")
    cache_dir = args.workdir / "cache" / path.stem
    report = zcore_fast.score_report(
        str(path), n_sample=1, cache="always", cache_dir=cache_dir, threads=args.threads
    )
    cache = str(report.cache_path)
    log(f"N={n:,} D={d} float16, {per_pair:,} samples per pair ({samples:,}), cache {cache}")
    load = [os.getloadavg()[0]]
    band_fixed = timed(cache, 2, "band", args.threads)
    band = timed(cache, args.ref_samples, "band", args.threads)
    band_per = (band - band_fixed) / (args.ref_samples - 2)
    log(f"band search: {band:.1f} s for {args.ref_samples:,} samples, {band_fixed:.1f} s for 2")
    half = timed(cache, samples // 2, "auto", args.threads)
    full = timed(cache, samples, "auto", args.threads)
    load.append(os.getloadavg()[0])
    log(f"default: {full:.1f} s for {samples:,} samples, {half:.1f} s for {samples // 2:,}")
    query = (full - half) / (samples - samples // 2)
    fixed = full - query * samples
    per_pair_build = max(0.0, fixed - band_fixed) / pairs
    per = full / samples
    print(f"N = {n:,}, D = {d}, float16, {args.threads} threads, load {load[0]:.2f}-{load[1]:.2f}")
    print(f"band search alone: {band_per * 1e3:.2f} ms per sample (marginal)")
    print(
        f"default (pair indexes): {per * 1e3:.3f} ms per sample, everything included "
        f"({per_pair:,} samples per pair): {band_per / per:.1f}x faster"
    )
    print(
        f"  parts: queries {query * 1e6:.0f} us per sample; fixed {fixed:.1f} s, of which "
        f"statistics and band indexes ~{band_fixed:.1f} s and ~{per_pair_build:.2f} s "
        "per pair index"
    )
    d64 = (2016 * per_pair_build + 8 * band_fixed) / auto + query
    print(
        f"  projected for D = 64 at n_sample='auto' ({auto:,} samples, 2,016 pair indexes, "
        f"statistics and band indexes of 64 dimensions): {d64 * 1e3:.2f} ms per sample"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
