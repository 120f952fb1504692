"""The torch backend vs plain batched PyTorch (and the Rust engine), same data, same run.

    python benches/bench_torch.py                      # GPU sizes on a GPU, small sizes on CPU
    python benches/bench_torch.py --n 1281167 50000 --d 1280 --samples 1000000

On a GPU (device "auto" = cuda:0 when PyTorch sees one): N = 1,281,167 and
50,000, D = 1,280, float16, 10^6 samples. Without one: N = 20,000, D = 256,
2,000 samples on CPU torch, beside the Rust engine. Prints one table row per
N: the backend's prep and sampling time, the plain batched-PyTorch baseline
(DESIGN.md section 6: gather, argmin, full top-k, eager) timed on fewer
samples in the same run, their per-sample ratio, and the largest score
difference from the Rust engine on the same float16 values and seed.
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


def baseline_per_sample(x: np.ndarray, samples: int, dev: torch.device) -> float:
    """Seconds per sample of `baseline` on the same pool, after a warm-up."""
    n = x.shape[0]
    cols = torch.from_numpy(np.ascontiguousarray(x.T)).to(dev)
    if dev.type == "cpu":
        cols = cols.float()  # no float16 arithmetic to save on a CPU
    batch = max(1, min(256, (2 << 30) // (n * 24)))
    baseline(cols, min(200, samples), batch)
    return timed(lambda: baseline(cols, samples, batch), dev) / samples


def bench(n: int, d: int, samples: int, args: argparse.Namespace, dev: torch.device) -> str:
    x = pool(n, d, dev)
    p = Params(samples, 2, K, EXP, True, 0)
    one = Params(1, 2, K, EXP, True, 0)
    run = lambda q: score_halves([x], q, device=dev)  # noqa: E731
    run(one)  # warm-up: CUDA context, Triton compilation
    prep = timed(lambda: run(one), dev)
    total = timed(lambda: run(p), dev)
    per = (total - prep) / samples
    base = baseline_per_sample(x, args.baseline_samples, dev)
    # Exactness on this device: the Rust engine on the same float16 values.
    c = Params(args.check_samples, 2, K, EXP, True, 0)
    threads = len(os.sched_getaffinity(0))

    def rust(count: int) -> np.ndarray:
        return _native.score(
            [x],
            n_sample=count,
            sample_dim=2,
            redund_nn=K,
            redund_exp=EXP,
            rand_init=True,
            seed=0,
            threads=threads,
        )[0]

    rust_prep = timed(lambda: rust(1), dev)
    t = time.perf_counter()
    want = rust(c.n_sample)
    rust_per = (time.perf_counter() - t - rust_prep) / c.n_sample
    diff = float(np.abs(run(c)[0] - want).max())
    return (
        f"| {n:,} | {d:,} | {samples:,} | {dev} | {prep:.2f} | {total - prep:.2f} "
        f"| {per * 1e6:.1f} | {base * 1e6:.0f} | {base / per:.1f}x "
        f"| {rust_per * 1e6:.0f} ({threads} threads, {c.n_sample:,} samples) | {diff:.1e} |"
    )


def main() -> None:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1_281_167, 50_000] if gpu else [20_000])
    ap.add_argument("--d", type=int, default=1280 if gpu else 256)
    ap.add_argument("--samples", type=int, default=1_000_000 if gpu else 2_000)
    ap.add_argument("--baseline-samples", type=int, default=20_000 if gpu else 500)
    ap.add_argument("--check-samples", type=int, default=2_000)
    ap.add_argument("--device", default="auto", help='"auto": cuda:0 when present, else cpu')
    args = ap.parse_args()
    dev = torch.device(("cuda:0" if gpu else "cpu") if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU torch"
    print(f"device: {name}; torch {torch.__version__}; redund_nn {K}, float16 pool")
    print(
        "| N | D | samples | device | prep s | sampling s | us/sample | batched PyTorch "
        "us/sample | ratio | Rust engine us/sample | max |score diff| vs Rust |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        print(bench(n, args.d, args.samples, args, dev), flush=True)


if __name__ == "__main__":
    main()
