"""ZCore engine vs the NumPy reference, same data, same run.

    python benches/bench_zcore.py --n 50000 --d 1280 --samples 1000000

Prints prep+scoring wall time for the engine, the reference's per-sample
time measured on a few thousand samples, and the per-sample speed ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import zcore_fast
from reference import reference_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--ref-samples", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, args.d)).astype(np.float32)
    x = centres[rng.integers(0, 20, args.n)] + rng.normal(size=(args.n, args.d)).astype(np.float32)
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        zcore_fast.score(x, n_sample=args.samples, backend="cpu")
        runs.append(time.perf_counter() - t)
    engine = float(np.median(runs))
    t = time.perf_counter()
    reference_scores(x, args.ref_samples)
    ref_per = (time.perf_counter() - t) / args.ref_samples
    eng_per = engine / args.samples
    print(
        f"| N | D | samples | engine wall (s, median of {args.repeats}) | engine us/sample "
        "| reference ms/sample (1 core) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.n:,} | {args.d:,} | {args.samples:,} | {engine:.1f} | {eng_per * 1e6:.1f} "
        f"| {ref_per * 1e3:.2f} | {ref_per / eng_per:.0f}x |"
    )


if __name__ == "__main__":
    main()
