"""The torch backend vs plain batched PyTorch (and the Rust engine), same data, same run.

    python benches/bench_torch.py                      # GPU sizes on a GPU, small sizes on CPU
    python benches/bench_torch.py --n 1281167 50000 --d 1280 --samples 1000000
    python benches/bench_torch.py --n 10000000 --d 64 --samples 200000
    python benches/bench_torch.py --n 1281167 --d 1280 --profile 20000 --profile-out prof.txt

On a GPU (device "auto" = cuda:0 when PyTorch sees one): N = 1,281,167 and
50,000, D = 1,280, float16, 10^6 samples. Without one: N = 20,000, D = 256,
2,000 samples on CPU torch, beside the Rust engine. Prints one table row per
N: the backend's prep (pool upload, statistics, noise: one 1-sample run)
and sampling time, the plain batched-PyTorch baseline (DESIGN.md section 6:
gather, argmin, full top-k, eager) timed in the same run on as many samples
as fit in --baseline-seconds, their per-sample ratio, and the exactness
check: the Rust engine on the same float16 values and seed, on the pool's
first --check-rows rows (all of them when N is smaller), --check-samples
samples: the largest score difference and whether the raw fixed-point sums
of both halves are bit-identical.

--profile S instead profiles S samples per N with torch.profiler (after a
warm-up run) and writes the top operations by device time to --profile-out.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from zcore_fast import _native
from zcore_fast.backends.torch_backend import Params, score_halves

K, EXP = 1000, 4.0


def pool(n: int, d: int, device: torch.device, seed: int = 0) -> np.ndarray:
    """Clustered float16 embeddings (n x d), generated on `device` in chunks."""
    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(20, d, generator=g, device=device)
    out = np.empty((n, d), dtype=np.float16)
    step = max(1, (256 << 20) // (4 * d))
    for at in range(0, n, step):
        m = min(step, n - at)
        label = torch.randint(0, 20, (m,), generator=g, device=device)
        rows = centres[label] + torch.randn(m, d, generator=g, device=device)
        out[at : at + m] = rows.half().cpu().numpy()
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


class Reporter:
    """Prints the samples done every 10 s (a slow run still says how far it got)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last >= 10:
            self.last = now
            print(f"  {done:,} of {total:,} samples after {now - self.start:.0f} s", flush=True)


def baseline(cols: torch.Tensor, samples: int, batch: int, seed: int = 0) -> None:
    """Plain batched PyTorch ZCore: per batch, gather two columns, full
    distances, argmin, a full top-k over N, weights, index_add."""
    d, n = cols.shape
    dev = cols.device
    g = torch.Generator(device=dev).manual_seed(seed)
    vals = cols.float()
    lo, hi = vals.amin(1), vals.amax(1)
    md = vals.median(1).values
    del vals
    scores = torch.zeros(n, dtype=torch.float64, device=dev)
    k = min(K, n - 1)
    for at in range(0, samples, batch):
        s = min(batch, samples - at)
        first = torch.randint(0, d, (s,), generator=g, device=dev)
        dims = torch.stack(
            [first, (first + torch.randint(1, d, (s,), generator=g, device=dev)) % d], 1
        )
        u = torch.rand(s, 2, generator=g, device=dev)
        a, m, b = lo[dims], md[dims], hi[dims]
        split = (m - a) / (b - a).clamp_min(1e-30)
        q = torch.where(
            u < split,
            a + torch.sqrt(u * (b - a) * (m - a)),
            b - torch.sqrt((1 - u) * (b - a) * (b - m)),
        )
        gathered = cols[dims].float()  # (s, 2, n)
        win = (gathered - q[..., None]).abs().sum(1).argmin(1)
        every = torch.arange(s, device=dev)
        centre = gathered[every, :, win]
        dist = (gathered - centre[..., None]).abs().sum(1)
        dist[every, win] = torch.inf
        near, idx = dist.topk(k, dim=1, largest=False)
        w = near.double().clamp_min(1e-30).pow(-EXP)
        w = w / w.sum(1, keepdim=True)
        w = torch.where(near[:, :1] == 0, (torch.arange(k, device=dev) == 0).double(), w)
        scores.index_add_(0, win, torch.ones(s, dtype=torch.float64, device=dev))
        scores.index_add_(0, idx.reshape(-1), -w.reshape(-1))


def baseline_per_sample(x: np.ndarray, args: argparse.Namespace, dev: torch.device) -> float:
    """Seconds per sample of `baseline` on the same pool, after a warm-up;
    timed on at most --baseline-samples samples, fewer where the warm-up
    says they would take longer than --baseline-seconds."""
    n = x.shape[0]
    cols = torch.from_numpy(np.ascontiguousarray(x.T)).to(dev)
    if dev.type == "cpu":
        cols = cols.float()  # no float16 arithmetic to save on a CPU
    batch = max(1, min(256, (2 << 30) // (n * 24)))
    warm = min(200, args.baseline_samples)
    guess = timed(lambda: baseline(cols, warm, batch), dev) / warm
    count = int(min(args.baseline_samples, max(batch, args.baseline_seconds / guess)))
    return timed(lambda: baseline(cols, count, batch), dev) / count


def identity(x: np.ndarray, args: argparse.Namespace, dev: torch.device) -> str:
    """The backend against the Rust engine on the first --check-rows rows."""
    xc = x[: args.check_rows]
    count = args.check_samples
    threads = len(os.sched_getaffinity(0))
    t = time.perf_counter()
    want = _native.score(
        [xc],
        n_sample=count,
        sample_dim=2,
        redund_nn=K,
        redund_exp=EXP,
        rand_init=True,
        seed=0,
        threads=threads,
    )
    rust_s = time.perf_counter() - t
    got = score_halves([xc], Params(count, 2, K, EXP, True, 0), device=dev)
    diff = float(np.abs(got[0] - want[0]).max())
    same = all(np.array_equal(g, w) for g, w in zip(got[1:], want[1:]))
    units = max(float(np.abs(g - w).max()) for g, w in zip(got[1:], want[1:])) * 2.0**32
    return (
        f"{diff:.1e}; raw sums {'bit-identical' if same else f'differ by {units:.0f} x 2^-32'} "
        f"({xc.shape[0]:,} rows, {count:,} samples; Rust {threads} threads {rust_s:.1f} s)"
    )


def bench(n: int, d: int, samples: int, args: argparse.Namespace, dev: torch.device) -> str:
    x = pool(n, d, dev)
    p = Params(samples, 2, K, EXP, True, 0)
    one = Params(1, 2, K, EXP, True, 0)
    run = lambda q, report=None: score_halves(  # noqa: E731
        [x], q, device=dev, batch_size=args.batch_size, progress=report
    )
    run(one)  # warm-up: CUDA context, Triton compilation
    prep = timed(lambda: run(one), dev)
    print(f"N = {n:,}: prep {prep:.2f} s, batch size {args.batch_size or 'auto'}", flush=True)
    total = timed(lambda: run(p, Reporter()), dev)
    per = (total - prep) / samples
    base = baseline_per_sample(x, args, dev) if args.baseline_samples else float("nan")
    check = identity(x, args, dev) if args.check_samples else "-"
    return (
        f"| {n:,} | {d:,} | {samples:,} | {dev} | {prep:.2f} | {total - prep:.2f} "
        f"| {total:.2f} | {per * 1e6:.2f} | {base * 1e6:.0f} | {base / per:.1f}x | {check} |"
    )


def profile(n: int, d: int, args: argparse.Namespace, dev: torch.device) -> None:
    """torch.profiler over --profile samples; the table goes to --profile-out."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = pool(n, d, dev)
    p = Params(args.profile, 2, K, EXP, True, 0)
    score_halves([x], Params(1000, 2, K, EXP, True, 0), device=dev)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        t = time.perf_counter()
        score_halves([x], p, device=dev)
        sync(dev)
        wall = time.perf_counter() - t
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)
    head = f"N = {n:,}, D = {d:,}, {args.profile:,} samples on {dev}: {wall:.2f} s profiled\n"
    with open(args.profile_out, "a") as f:
        f.write(head + table + "\n\n")
    print(head + table, flush=True)


def main() -> None:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1_281_167, 50_000] if gpu else [20_000])
    ap.add_argument("--d", type=int, default=1280 if gpu else 256)
    ap.add_argument("--samples", type=int, default=1_000_000 if gpu else 2_000)
    ap.add_argument("--baseline-samples", type=int, default=20_000 if gpu else 500, help="0: none")
    ap.add_argument("--baseline-seconds", type=float, default=10.0)
    ap.add_argument("--check-samples", type=int, default=2_000, help="0: no check")
    ap.add_argument("--check-rows", type=int, default=50_000)
    ap.add_argument("--profile", type=int, default=0, help="profile this many samples instead")
    ap.add_argument("--profile-out", default="torch_profile.txt")
    ap.add_argument("--batch-size", type=int, default=None, help="the backend's (default: auto)")
    ap.add_argument("--device", default="auto", help='"auto": cuda:0 when present, else cpu')
    args = ap.parse_args()
    dev = torch.device(("cuda:0" if gpu else "cpu") if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU torch"
    print(f"device: {name}; torch {torch.__version__}; redund_nn {K}, float16 pool", flush=True)
    if args.profile:
        for n in args.n:
            profile(n, args.d, args, dev)
        return
    print(
        "| N | D | samples | device | prep s | sampling s | total s | us/sample "
        "| batched PyTorch us/sample | ratio | vs Rust engine: max |score diff| |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        print(bench(n, args.d, args.samples, args, dev), flush=True)


if __name__ == "__main__":
    main()
