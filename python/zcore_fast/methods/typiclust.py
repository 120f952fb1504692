"""TypiClust (Hacohen, Dekel and Weinshall, "Active Learning on a Budget:
Opposite Strategies Suit High and Low Budgets", ICML 2022), initial pool
selection.

On L2-normalised embeddings by default, as in the reference (its
`load_features(..., normalized=True)`): k-means and typicality on the unit
sphere. On Fashion-MNIST with EfficientNet-Lite0 features (README
"Low-budget methods") that is 2 to 9 points ahead of the raw rows from 1 to
20 examples per class on the linear probe; `normalise=False` keeps the raw
Euclidean geometry.

k-means into K = budget clusters (at most `MAX_CLUSTERS`); in each cluster the
most typical row, typicality(x) = 1 / (mean Euclidean distance from x to its
`K_NN` nearest rows of the same cluster). As in the reference
(avihu111/TypiClust, `typiclust.py`): clusters of at most `MIN_CLUSTER_SIZE`
rows are skipped, the neighbour count is min(K_NN, cluster size // 2), and the
largest clusters come first.

Above the cap, several rows per cluster: quotas in proportion to cluster size
(largest remainders, at least one per cluster, at most its size), each
cluster's most typical rows first. (The reference cycles through its 500
clusters in equal turns instead, recomputing typicality after each pick.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import ProgressFn, Selection, Steps, blas_threads, seed_int
from zcore_fast.methods.kmeans import MAX_ITER, kmeans
from zcore_fast.methods.neighbors import knn
from zcore_fast.methods.probcover import normalise as unit_rows
from zcore_fast.methods.rows import Rows, open_resident
from zcore_fast.select import Budget, keep_count

#: Neighbours that measure density (the paper's 20).
K_NN = 20
#: Clusters of at most this many rows are skipped while larger ones remain
#: (the reference's 5: too few rows to measure density).
MIN_CLUSTER_SIZE = 5
#: Cap on K. The paper's 500, and a second reason here: k-means costs
#: N x K x D per iteration, so K = budget would make a 10 % budget of a
#: million rows a 100,000-cluster problem; above the cap, budgets are
#: spread over the clusters by size instead.
MAX_CLUSTERS = 500
#: Clusters should average at least this many rows, so each has its 20
#: neighbours plus room (K <= N / 40).
MIN_ROWS_PER_CLUSTER = 2 * K_NN
#: Cluster and measure typicality on L2-normalised rows (the reference's default).
NORMALISE = True


def cluster_count(budget_rows: int, n: int, max_clusters: int = MAX_CLUSTERS) -> int:
    """K for a budget of `budget_rows` rows out of `n`."""
    return max(1, min(budget_rows, max_clusters, n // MIN_ROWS_PER_CLUSTER))


def typicality(x: np.ndarray, labels: np.ndarray, k_nn: int = K_NN) -> np.ndarray:
    """Typicality of each row within its cluster, float64 (N,): 1 / the mean
    distance to its min(k_nn, size // 2) nearest rows of the cluster (inf for
    a row with duplicates only; 0 for a cluster of one row)."""
    out = np.zeros(x.shape[0], dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(k_nn, members.size // 2)
        if k < 1:
            continue
        dist, _ = knn(x[members], k)
        mean = dist.astype(np.float64).mean(axis=1)
        with np.errstate(divide="ignore"):
            out[members] = 1.0 / mean
    return out


def quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Rows to take from each cluster for `budget` rows in all.

    Eligible clusters: those larger than MIN_CLUSTER_SIZE (all clusters when
    those hold fewer than `budget` rows). With `budget` at most the eligible
    count, one row from each of the `budget` largest (ties: lower cluster).
    Else at least one each, the rest in proportion to size by largest
    remainders (ties: larger cluster, then lower id), capped at the size.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    eligible = sizes > MIN_CLUSTER_SIZE
    if sizes[eligible].sum() < budget:
        eligible = sizes > 0
    order = np.lexsort((np.arange(sizes.size), -sizes))  # largest first
    order = order[eligible[order]]
    out = np.zeros(sizes.size, dtype=np.int64)
    if budget <= order.size:
        out[order[:budget]] = 1
        return out
    out[order] = 1
    left = budget - order.size
    while left > 0:
        room = sizes - out
        open_ = order[room[order] > 0]
        share = left * sizes[open_] / sizes[open_].sum()
        add = np.minimum(np.floor(share).astype(np.int64), room[open_])
        out[open_] += add
        left -= int(add.sum())
        if left > 0 and add.sum() == 0:
            # Largest remainders, one row each, in size order.
            rem = share - np.floor(share)
            pick = open_[np.lexsort((np.arange(open_.size), -sizes[open_], -rem))][:left]
            out[pick] += 1
            left -= pick.size
    return out


def select_from_clusters(
    x: np.ndarray, labels: np.ndarray, budget: int, k_nn: int = K_NN
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, typicality) of TypiClust's choice given the clusters.

    Indices in rounds: the most typical row of every cluster that has a
    quota (largest cluster first), then the second most typical, and so on;
    within a cluster, higher typicality first, ties by the lower row."""
    labels = np.asarray(labels, dtype=np.int64)
    typ = typicality(x, labels, k_nn)
    sizes = np.bincount(labels)
    quota = quotas(sizes, budget)
    order = np.lexsort((np.arange(sizes.size), -sizes))
    picks: list[tuple[int, int, int]] = []  # (round, cluster position, row)
    for pos, c in enumerate(order):
        if quota[c] == 0:
            continue
        members = np.flatnonzero(labels == c)
        best = members[np.lexsort((members, -typ[members]))][: quota[c]]
        picks.extend((r, pos, int(row)) for r, row in enumerate(best))
    picks.sort()
    return np.array([p[2] for p in picks], dtype=np.int64), typ


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    max_clusters: int = MAX_CLUSTERS,
    max_iter: int = MAX_ITER,
    normalise: bool = NORMALISE,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """TypiClust selection with its typicality scores and parameters; see `select`."""
    rows = open_resident(embeddings)
    seed = seed_int(seed)
    keep = keep_count(budget, rows.n)
    k = cluster_count(keep, rows.n, max_clusters)
    normalise = bool(normalise)
    steps = Steps(progress, (8, 2))
    with blas_threads(threads):
        stage = steps.stage()
        data: Rows | np.ndarray = unit_rows(rows.dense()) if normalise else rows
        km = kmeans(data, k, seed=seed, max_iter=max_iter, threads=threads, progress=stage.report)
        stage.finish()
        x = data if isinstance(data, np.ndarray) else rows.dense()
        idx, typ = select_from_clusters(x, km.labels, keep)
        steps.stage().finish()
    params: dict[str, Any] = {
        "seed": seed,
        "clusters": k,
        "max_clusters": max_clusters,
        "k_nn": K_NN,
        "normalise": normalise,
        "kmeans_iterations": km.n_iter,
        "kmeans_converged": km.converged,
    }
    finite = np.where(np.isfinite(typ), typ, np.nan)
    top = np.nanmax(finite) if np.isfinite(finite).any() else 1.0
    scores = np.where(np.isfinite(typ), typ, 2 * top).astype(np.float32)
    return Selection("typiclust", idx, scores, "typicality", params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    max_clusters: int = MAX_CLUSTERS,
    max_iter: int = MAX_ITER,
    normalise: bool = NORMALISE,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """TypiClust: the most typical row of each of K = budget k-means clusters.

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: seeds k-means; same seed, same indices.
        max_clusters: cap on K (default `MAX_CLUSTERS`); also K <= N / 40.
        max_iter: k-means iteration cap.
        normalise: cluster and measure typicality on L2-normalised rows
            (default, as the reference); False: on the rows as given.
        threads: cap on BLAS threads (with threadpoolctl installed).
        progress: progress(done, 1000).

    Returns:
        int64 indices in rounds (one per cluster, largest cluster first).
    """
    return run(
        embeddings,
        budget,
        seed=seed,
        max_clusters=max_clusters,
        max_iter=max_iter,
        normalise=normalise,
        threads=threads,
        progress=progress,
    ).indices
