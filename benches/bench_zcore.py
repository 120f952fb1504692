"""ZCore engine vs the NumPy reference, same data, same run, at every
instruction-set level this CPU runs.

    python benches/bench_zcore.py --n 50000 --d 1280 --samples 1000000
    python benches/bench_zcore.py --levels avx2 portable --repeats 3

Prints, per level, the engine's prep+scoring wall time (median of
`--repeats`), its per-sample time, the ratio to the reference's per-sample
time (measured on `--ref-samples` samples in the same run) and the ratio of
its time to the best level's. Levels are picked through ZCORE_FAST_ISA and
run alternately (best, ..., portable, best, ...) so that a noisy machine
disturbs them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "tests"))
# The in-place build (an extension module beside the sources, not the .pyi
# stub) where there is one, not a stale install.
if any(p.suffix in (".so", ".pyd") for p in (_ROOT / "python" / "zcore_fast").glob("_native*")):
    sys.path.insert(0, str(_ROOT / "python"))
import zcore_fast  # noqa: E402
from reference import reference_scores  # noqa: E402
from zcore_fast import _native  # noqa: E402


def cpu_model() -> str:
    """The CPU's model name (Linux), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--ref-samples", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--levels",
        nargs="+",
        default=None,
        help=f"levels to time (default: every one this CPU runs: {_native.isa_levels()})",
    )
    args = ap.parse_args()
    levels = args.levels or _native.isa_levels()[::-1]
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, args.d)).astype(np.float32)
    x = centres[rng.integers(0, 20, args.n)] + rng.normal(size=(args.n, args.d)).astype(np.float32)
    runs: dict[str, list[float]] = {level: [] for level in levels}
    for _ in range(args.repeats):
        for level in levels:
            os.environ["ZCORE_FAST_ISA"] = level
            t = time.perf_counter()
            zcore_fast.score(x, n_sample=args.samples, backend="cpu")
            runs[level].append(time.perf_counter() - t)
    os.environ.pop("ZCORE_FAST_ISA", None)
    t = time.perf_counter()
    reference_scores(x, args.ref_samples)
    ref_per = (time.perf_counter() - t) / args.ref_samples
    best = float(np.median(runs[levels[0]]))
    print(f"CPU: {cpu_model()}; levels this CPU runs: {', '.join(_native.isa_levels())}")
    print(
        f"| level | N | D | samples | engine wall (s, median of {args.repeats}) "
        "| engine us/sample | reference ms/sample (1 core) | ratio to reference "
        f"| time / {levels[0]}'s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        wall = float(np.median(runs[level]))
        per = wall / args.samples
        print(
            f"| {level} | {args.n:,} | {args.d:,} | {args.samples:,} | {wall:.1f} "
            f"| {per * 1e6:.1f} | {ref_per * 1e3:.2f} | {ref_per / per:.0f}x "
            f"| {wall / best:.2f} |"
        )


if __name__ == "__main__":
    main()
