"""Kernel herding as facility location (MaxHerding: Bae, Sutherland et al.,
"Generalized Coverage for More Robust Low-Budget Active Learning", ECCV 2024;
apricot's FacilityLocationSelection).

Greedy maximisation of the kernel coverage
    F(S) = sum over rows x of max over s in S of k(x, s),
with a Gaussian kernel k(x, s) = exp(-|x - s|^2 / (2 sigma^2)) kept sparse:
k(x, s) counts only when s is x itself or one of x's `neighbors` nearest rows
(0 elsewhere). F is monotone submodular, so the lazy greedy (stale gains are
upper bounds) picks exactly what the plain greedy picks.

Kernel width from the data: sigma = the median distance over all k-NN graph
edges (the median heuristic, taken over neighbourhoods rather than all
pairs, where a sparse kernel lives).
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import (
    ProgressFn,
    Selection,
    Steps,
    blas_threads,
    positive_int,
    seed_int,
)
from zcore_fast.methods.neighbors import knn
from zcore_fast.methods.rows import Rows, open_resident
from zcore_fast.select import Budget, keep_count

#: Neighbours per row in the sparse kernel (the k-NN graph's degree).
NEIGHBORS = 20


def kernel_graph(
    dist: np.ndarray, idx: np.ndarray, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Columns of the sparse kernel from a k-NN graph: for each candidate s,
    the rows x it covers (s itself and every x with s among x's neighbours)
    and the weights k(x, s).

    Returns (starts (N + 1,), rows, weights, sigma): candidate s covers
    rows[starts[s]:starts[s + 1]] with those weights."""
    n, k = idx.shape
    if sigma is None:
        sigma = float(np.median(dist)) if dist.size else 1.0
        if not sigma > 0:
            sigma = 1.0
    x_of = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
    s_of = np.concatenate([np.arange(n), idx.reshape(-1)])
    d = np.concatenate([np.zeros(n), dist.reshape(-1).astype(np.float64)])
    w = np.exp(-(d * d) / (2.0 * sigma * sigma))
    order = np.lexsort((x_of, s_of))
    starts = np.concatenate(([0], np.cumsum(np.bincount(s_of, minlength=n))))
    return starts, x_of[order], w[order], sigma


def greedy(starts: np.ndarray, rows: np.ndarray, weights: np.ndarray, budget: int) -> np.ndarray:
    """Lazy greedy facility location over the sparse kernel columns.

    Each step adds the candidate of largest gain sum_x max(0, k(x, s) -
    cover(x)), ties to the lower index; returns int64 indices in the order
    chosen."""
    n = starts.size - 1
    cover = np.zeros(n, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)

    def gain(s: int) -> float:
        lo, hi = starts[s], starts[s + 1]
        return float(np.maximum(weights[lo:hi] - cover[rows[lo:hi]], 0.0).sum())

    # Every column holds its own row, so reduceat sees no empty segment.
    first = np.add.reduceat(weights, starts[:-1]) if n else np.zeros(0)
    heap = [(-float(g), s) for s, g in enumerate(first)]
    heapq.heapify(heap)
    out: list[int] = []
    while len(out) < budget:
        _, s = heapq.heappop(heap)
        if chosen[s]:
            continue
        g = gain(s)
        if heap and (-g, s) > heap[0]:
            heapq.heappush(heap, (-g, s))  # stale: someone else may be better
            continue
        chosen[s] = True
        out.append(s)
        lo, hi = starts[s], starts[s + 1]
        np.maximum.at(cover, rows[lo:hi], weights[lo:hi])
    return np.array(out, dtype=np.int64)


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    neighbors: int = NEIGHBORS,
    sigma: float | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """Herding selection with each row's coverage gain when picked; see `select`."""
    rows = open_resident(embeddings)
    seed = seed_int(seed)  # no random step: recorded for the summary only
    keep = keep_count(budget, rows.n)
    neighbors = positive_int("neighbors", neighbors)
    k = min(neighbors, rows.n - 1)
    steps = Steps(progress, (8, 2))
    with blas_threads(threads):
        x = rows.dense()
        if k >= 1:
            dist, idx = knn(x, k)
        else:  # one row: nothing to cover but itself
            dist, idx = np.zeros((rows.n, 0), np.float32), np.zeros((rows.n, 0), np.int64)
        steps.stage().finish()
        starts, cov_rows, weights, used_sigma = kernel_graph(dist, idx, sigma)
        chosen = greedy(starts, cov_rows, weights, keep)
        steps.stage().finish()
    # Score: the order chosen, as a rank (1 = first pick), 0 for rows not kept.
    scores = np.zeros(rows.n, dtype=np.float32)
    scores[chosen] = np.arange(chosen.size, 0, -1, dtype=np.float32) / chosen.size
    params: dict[str, Any] = {"seed": seed, "neighbors": k, "sigma": used_sigma}
    return Selection("herding", chosen, scores, "herding_order", params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    neighbors: int = NEIGHBORS,
    sigma: float | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Kernel herding / facility location on a sparse k-NN kernel.

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: recorded only: the method has no random step.
        neighbors: k of the k-NN graph the kernel lives on (default 20).
        sigma: Gaussian kernel width; default the median k-NN edge length.
        threads: cap on BLAS threads (with threadpoolctl installed).
        progress: progress(done, 1000).

    Returns:
        int64 indices in the order the greedy chose them.
    """
    return run(
        embeddings,
        budget,
        seed=seed,
        neighbors=neighbors,
        sigma=sigma,
        threads=threads,
        progress=progress,
    ).indices
