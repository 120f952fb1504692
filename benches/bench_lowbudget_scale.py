"""What the low-budget methods cost at scale: k-means with many clusters and a
k-NN graph, at D = 1,280, measured on a subsample and extrapolated.

    python benches/bench_lowbudget_scale.py                       # the README figures
    python benches/bench_lowbudget_scale.py --n 50000 --k 10000 --base 200000

The issue's sizes (k-means K = 10^4 on N = 10^6; a 20-NN graph of the same
pool) take hours on 2 cores, so each is timed on a piece whose cost is a
known fraction of the whole and scaled linearly, and the table says so:
- one Lloyd iteration on N = --n rows (cost N x K x D): scaled by 10^6 / n;
  the project's NumPy k-means (methods/kmeans.py) and faiss.Kmeans, same data;
- exact 20-NN: --queries query rows against --base rows (cost Q x B x D),
  scaled to 10^6 x 10^6 (NumPy blocks and faiss IndexFlatL2);
- approximate 20-NN with faiss IndexIVFFlat (nlist = 4 sqrt(B), nprobe 16):
  training and search time on the same piece, its recall against the exact
  search; its search scales with N x nprobe / nlist per query.

Data: clustered float32 Gaussians (100 centres). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "python" / "zcore_fast").glob("_native*.so")):
    # This checkout's code when its extension is built in place; otherwise
    # the installed package (pip install .).
    sys.path.insert(0, str(ROOT / "python"))
from zcore_fast.methods import kmeans as km_module  # noqa: E402
from zcore_fast.methods.neighbors import faiss_module, knn  # noqa: E402

FULL_N = 1_000_000


def pool(n: int, d: int, seed: int = 0, centres: int = 100) -> np.ndarray:
    """Clustered float32 rows, generated in chunks."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 50_000):
        hi = min(n, lo + 50_000)
        out[lo:hi] = c[rng.integers(0, centres, hi - lo)]
        out[lo:hi] += 0.8 * rng.standard_normal((hi - lo, d), dtype=np.float32)
    return out


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, default=1280)
    p.add_argument("--n", type=int, default=50_000, help="rows for one k-means iteration")
    p.add_argument("--k", type=int, default=10_000, help="clusters")
    p.add_argument("--base", type=int, default=200_000, help="rows searched by the k-NN")
    p.add_argument("--queries", type=int, default=2_000, help="query rows timed")
    p.add_argument("--nn", type=int, default=20)
    p.add_argument("--skip-numpy-kmeans", action="store_true")
    args = p.parse_args()
    faiss = faiss_module()
    rows = []

    x = pool(args.n, args.d)
    scale = FULL_N / args.n
    init = x[np.random.default_rng(1).choice(args.n, args.k, replace=False)]
    if not args.skip_numpy_kmeans:
        rows_x = km_module.open_rows(x)
        # One Lloyd iteration exactly: the assignment and the per-cluster sums.
        _, s = timed(lambda: km_module._pass(rows_x, init, sums=True))
        rows.append((f"k-means iteration, NumPy (methods/kmeans.py), N={args.n:,}", s, s * scale))
    if faiss is not None:
        # faiss subsamples to 256 rows per centroid by default; N < 256 K here.
        km = faiss.Kmeans(args.d, args.k, niter=1, seed=1, max_points_per_centroid=10**9)
        _, s = timed(lambda: km.train(x, init_centroids=init))
        rows.append((f"k-means iteration, faiss.Kmeans, N={args.n:,}", s, s * scale))

    base = pool(args.base, args.d, seed=2)
    q = base[: args.queries]
    graph_scale = (FULL_N / args.queries) * (FULL_N / args.base)
    (_, exact), s = timed(lambda: knn(base, args.nn, queries=q, backend="numpy"))
    rows.append(
        (f"exact {args.nn}-NN, NumPy, {args.queries:,} queries x {args.base:,}", s, s * graph_scale)
    )
    if faiss is not None:
        (_, exact), s = timed(lambda: knn(base, args.nn, queries=q, backend="faiss"))
        rows.append(
            (
                f"exact {args.nn}-NN, faiss IndexFlatL2, {args.queries:,} queries x {args.base:,}",
                s,
                s * graph_scale,
            )
        )
        nlist = int(4 * math.sqrt(args.base))
        quant = faiss.IndexFlatL2(args.d)
        ivf = faiss.IndexIVFFlat(quant, args.d, nlist)
        train = base[np.random.default_rng(3).choice(args.base, 40 * nlist, replace=False)]
        _, t_train = timed(lambda: ivf.train(train))
        _, t_add = timed(lambda: ivf.add(base))
        ivf.nprobe = 16
        (_, approx), s = timed(lambda: ivf.search(q, args.nn))
        recall = np.mean([len(set(a) & set(b)) / args.nn for a, b in zip(approx, exact)])
        full_nlist = int(4 * math.sqrt(FULL_N))
        # Per query: nprobe lists of N / nlist rows, plus the nlist centroids.
        per_query = (16 * FULL_N / full_nlist + full_nlist) / (16 * args.base / nlist + nlist)
        rows.append(
            (
                f"IVF train ({40 * nlist:,} rows, nlist {nlist}) + add {args.base:,}",
                t_train + t_add,
                float("nan"),
            )
        )
        rows.append(
            (
                f"approx. {args.nn}-NN, IVFFlat nprobe 16 (recall@{args.nn} {recall:.3f}), "
                f"{args.queries:,} queries",
                s,
                s * (FULL_N / args.queries) * per_query,
            )
        )
    print(f"| measured | seconds | extrapolated to N = 10^6, K = {args.k:,} (s) |")
    print("|---|---|---|")
    for what, s, full in rows:
        print(f"| {what} | {s:.2f} | {'-' if math.isnan(full) else f'{full:,.0f}'} |")


if __name__ == "__main__":
    main()
