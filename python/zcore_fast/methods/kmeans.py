"""k-means (Lloyd's algorithm with k-means++ seeding) over row blocks.

Shared by Moderate (label-free classes) and ELFS (pseudo-labels). Written in
NumPy on purpose: each iteration is two float32 matrix products per block of
rows (distances to the centroids, and the per-cluster sums), which OpenBLAS
already runs at full speed on every core, so a Rust kernel would not be
faster and scikit-learn/faiss would be a heavy dependency for one function.
Memory stays bounded by a block (64 MB of float32) plus O(N) labels for
float32 inputs (memory-mapped or not); float16 or concatenated inputs are
converted to one float32 copy first when it fits in half the free memory
(see `rows.resident`), else block by block in every pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zcore_fast.methods.base import (
    ProgressFn,
    Stage,
    Steps,
    blas_threads,
    positive_int,
    rng_for,
    seed_int,
)
from zcore_fast.methods.rows import Rows, RowsLike, open_resident, open_rows

#: Default Lloyd iterations cap; clustered embeddings converge well before.
MAX_ITER = 100
#: Default tolerance: stop when the squared centroid shift, summed over
#: centroids, is below tol x (mean per-dimension variance), as scikit-learn does.
TOL = 1e-4


@dataclass(frozen=True)
class KMeans:
    """A k-means clustering.

    Attributes:
        centroids: float32 (k, D) cluster centres.
        labels: int64 (N,) cluster of each row, in [0, k). A cluster is empty
            only when the data has fewer than k distinct rows.
        sq_distances: float32 (N,) squared Euclidean distance of each row to
            its centroid.
        n_iter: Lloyd iterations run.
        converged: whether the labels settled or the centroids moved less than
            the tolerance before `max_iter`.
    """

    centroids: np.ndarray
    labels: np.ndarray
    sq_distances: np.ndarray
    n_iter: int
    converged: bool

    @property
    def inertia(self) -> float:
        """Sum of squared distances of rows to their centroids."""
        return float(self.sq_distances.sum(dtype=np.float64))


def check_clusters(k: object, n: int) -> int:
    """`k` as a cluster count for `n` rows: 1 <= k <= n, or a clear error."""
    k = positive_int("clusters", k)
    if k > n:
        raise ValueError(
            f"clusters={k} is more than the {n} rows to cluster; use at most {n} clusters"
        )
    return k


def init_rows_default(k: int) -> int:
    """Rows sampled for k-means++ seeding: enough for every cluster to be seen
    often, small enough that seeding costs less than one Lloyd pass."""
    return max(20_000, 20 * k)


def kmeans(
    embeddings: RowsLike,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
    init: np.ndarray | None = None,
    init_rows: int | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> KMeans:
    """Clusters the rows of `embeddings` into `k` clusters.

    Args:
        embeddings: what `zcore_fast.score` accepts, or an opened `Rows`.
        k: number of clusters, 1 <= k <= N.
        seed: seeds the k-means++ sample and draws; same seed, same result.
        max_iter: cap on Lloyd iterations.
        tol: relative tolerance on the centroid shift (see `TOL`); 0 runs until
            the labels stop changing or `max_iter`.
        init: optional (k, D) starting centroids instead of k-means++.
        init_rows: rows sampled for k-means++ (default `init_rows_default(k)`).
        threads: cap on BLAS threads (needs threadpoolctl; default: BLAS's own).
        progress: called as progress(done, 1000) after each iteration.

    Returns:
        A `KMeans`. Ties between equally near centroids go to the lower cluster.
        Empty clusters are re-seeded at the rows farthest from their centroids.
    """
    rows = open_resident(embeddings)
    k = check_clusters(k, rows.n)
    max_iter = positive_int("max_iter", max_iter)
    seed = seed_int(seed)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol}")
    stage = Steps(progress).stage()
    with blas_threads(threads):
        sample = _sample(rows, k, seed, init_rows)
        if init is None:
            centroids = _kmeans_plus_plus(sample, k, rng_for(seed, 1))
        else:
            centroids = np.array(init, dtype=np.float32)
            if centroids.shape != (k, rows.d):
                raise ValueError(f"init has shape {centroids.shape}; expected ({k}, {rows.d})")
        # Tolerance relative to the data's spread, so it does not depend on
        # units. About 10,000 rows spread over the sample estimate it well
        # (strided: files are often sorted by class).
        spread = sample[:: max(1, sample.shape[0] // 10_000)]
        tol_abs = tol * float(spread.var(axis=0, dtype=np.float64).mean())
        return _lloyd(rows, centroids, max_iter, tol_abs, stage)


def init_centroids(
    embeddings: RowsLike, k: int, *, seed: int = 0, init_rows: int | None = None
) -> np.ndarray:
    """The k-means++ starting centroids `kmeans` uses for this seed, float32 (k, D)."""
    rows = open_rows(embeddings)
    k = check_clusters(k, rows.n)
    seed = seed_int(seed)
    sample = _sample(rows, k, seed, init_rows)
    return _kmeans_plus_plus(sample, k, rng_for(seed, 1))


def assign(embeddings: RowsLike, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, squared distances) of every row to its nearest centroid."""
    rows = open_rows(embeddings, check_finite=False)
    labels, sq, _, _ = _pass(rows, np.asarray(centroids, dtype=np.float32), sums=False)
    return labels, sq


def _sample(rows: Rows, k: int, seed: int, init_rows: int | None) -> np.ndarray:
    m = init_rows_default(k) if init_rows is None else positive_int("init_rows", init_rows)
    m = max(k, min(rows.n, m))
    if m == rows.n:
        return rows.dense()
    index = np.sort(rng_for(seed, 0).choice(rows.n, size=m, replace=False))
    return rows.take(index)


def _sq_dist(x: np.ndarray, x_sq: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distances (len(x), len(c)) as |x|^2 - 2 x.c + |c|^2: one sgemm."""
    c_sq = np.einsum("ij,ij->i", c, c)
    d = x @ c.T
    d *= -2.0
    d += x_sq[:, None]
    d += c_sq[None, :]
    np.maximum(d, 0.0, out=d)  # rounding can make a tiny distance negative
    return d


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant): each
    new centre is the best of 2 + ln(k) candidates drawn with probability
    proportional to the squared distance to the nearest chosen centre."""
    m = x.shape[0]
    x_sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(m))
    centres[0] = x[first]
    closest = _sq_dist(x, x_sq, x[first : first + 1])[:, 0].astype(np.float64)
    for c in range(1, k):
        cumulative = np.cumsum(closest)
        if cumulative[-1] <= 0:  # every row is a chosen centre: duplicates only
            candidates = rng.integers(m, size=trials)
        else:
            draws = rng.uniform(size=trials) * cumulative[-1]
            candidates = np.minimum(np.searchsorted(cumulative, draws), m - 1)
        d = _sq_dist(x, x_sq, x[candidates]).astype(np.float64)  # (m, trials)
        np.minimum(d, closest[:, None], out=d)
        best = int(np.argmin(d.sum(axis=0)))
        closest = d[:, best]
        centres[c] = x[candidates[best]]
    return centres


def _pass(
    rows: Rows, centroids: np.ndarray, *, sums: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the rows: labels, squared distances, and (with `sums`)
    the float64 per-cluster sums and counts for the update step."""
    k, d = centroids.shape
    labels = np.empty(rows.n, dtype=np.int64)
    sq = np.empty(rows.n, dtype=np.float32)
    total = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for start, block in rows.blocks():
        stop = start + block.shape[0]
        dist = _sq_dist(block, np.einsum("ij,ij->i", block, block), centroids)
        lab = np.argmin(dist, axis=1)  # the first minimum: lower cluster wins ties
        labels[start:stop] = lab
        sq[start:stop] = dist[np.arange(lab.size), lab]
        if sums:
            onehot = np.zeros((lab.size, k), dtype=np.float32)
            onehot[np.arange(lab.size), lab] = 1.0
            # block.T @ onehot is the fast layout for OpenBLAS (measured 10x
            # faster than onehot.T @ block); float32 within a block, float64 across.
            total += (block.T @ onehot).T
            counts += np.bincount(lab, minlength=k)
    return labels, sq, total, counts


def _lloyd(
    rows: Rows, centroids: np.ndarray, max_iter: int, tol_abs: float, stage: Stage
) -> KMeans:
    previous: np.ndarray | None = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        labels, sq, total, counts = _pass(rows, centroids, sums=True)
        stage.report(it, max_iter + 1)
        if previous is not None and np.array_equal(labels, previous):
            # Same labels as the pass that produced these centroids: they are
            # those labels' means, so labels and centroids agree. Done.
            stage.finish()
            return KMeans(centroids, labels, sq, it, True)
        updated = centroids.copy()
        filled = counts > 0
        updated[filled] = (total[filled] / counts[filled, None]).astype(np.float32)
        empty = np.flatnonzero(~filled)
        if empty.size:
            # Re-seed empty clusters at the rows worst served by their centroid.
            farthest = np.argsort(-sq, kind="stable")[: empty.size]
            updated[empty] = rows.take(farthest)
        shift = float(((updated.astype(np.float64) - centroids) ** 2).sum())
        centroids, previous = updated, labels
        if shift <= tol_abs and empty.size == 0:
            converged = True
            break
    labels, sq, _, _ = _pass(rows, centroids, sums=False)
    stage.finish()
    return KMeans(centroids, labels, sq, it, converged)
