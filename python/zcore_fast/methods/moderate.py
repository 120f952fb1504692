"""Moderate coreset (Xia et al., "Moderate Coreset: A Universal Method of Data
Selection for Real-world Data-efficient Deep Learning", ICLR 2023).

Score: the Euclidean distance of each row to its class prototype, the
coordinate-wise median of the class's rows. Selection: the rows whose
distances are closest to the median distance, i.e. the band of distance
quantiles [0.5 - r/2, 0.5 + r/2] for budget r.

As in the reference (tmllab/2023_ICLR_Moderate-DS, selection.py), distances
are to each row's own class prototype, and the band is taken over all rows
together (one global sort of the distances, not a band per class). Without
labels the classes are k-means clusters of the embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import ProgressFn, Selection, Steps, blas_threads, seed_int
from zcore_fast.methods.classes import Labels, classes_for
from zcore_fast.methods.kmeans import MAX_ITER
from zcore_fast.methods.rows import Rows, RowsLike, open_resident, open_rows
from zcore_fast.select import Budget, keep_count

#: Which end of the distance is "hard" for CCS: far from the prototype.
DESCENDING = True


def prototypes(embeddings: RowsLike, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Coordinate-wise median of each class's rows, float32 (n_classes, D).

    A class with no rows gets a prototype of NaN (no row refers to it)."""
    rows = open_rows(embeddings, check_finite=False)
    order = np.argsort(classes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(classes, minlength=n_classes))))
    out = np.full((n_classes, rows.d), np.nan, dtype=np.float32)
    for c in range(n_classes):
        members = order[bounds[c] : bounds[c + 1]]
        if members.size:
            # One class in memory at a time, dimension-major: a median along
            # contiguous memory is about twice as fast as down the columns.
            out[c] = np.median(np.ascontiguousarray(rows.take(members).T), axis=1)
    return out


def prototype_distances(
    embeddings: RowsLike, classes: np.ndarray, protos: np.ndarray
) -> np.ndarray:
    """Euclidean distance of each row to its class's prototype, float32 (N,)."""
    rows = open_rows(embeddings, check_finite=False)
    out = np.empty(rows.n, dtype=np.float32)
    for start, block in rows.blocks():
        stop = start + block.shape[0]
        diff = block - protos[classes[start:stop]]
        out[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def median_band(distances: np.ndarray, budget: Budget) -> np.ndarray:
    """The `budget` rows whose distance rank is nearest the median rank.

    Returns int64 indices, best first: by |rank - (N - 1) / 2|, the smaller
    distance first when two ranks are equally far from the middle, ties in
    distance by the lower row index. The first k of them are always the
    quantile band of width k / N centred on the median.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"distances must be a non-empty 1-D array, got shape {d.shape}")
    keep = keep_count(budget, d.size)
    by_distance = np.argsort(d, kind="stable")
    rank = np.arange(d.size, dtype=np.float64)
    # lexsort: last key first; equal offsets fall back to the lower rank.
    preference = np.lexsort((rank, np.abs(rank - (d.size - 1) / 2.0)))
    return by_distance[preference[:keep]].astype(np.int64)


def scores(
    embeddings: RowsLike,
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(distance of each row to its class's median, float32 (N,); how the
    classes were made). Classes: `labels` when given, else k-means with
    `clusters` clusters (default 10, at most N)."""
    rows = open_resident(embeddings)
    seed = seed_int(seed)
    # k-means dominates; the medians and distances are one pass each.
    steps = Steps(progress, (8, 1, 1))
    with blas_threads(threads):
        stage = steps.stage()
        classes, count, info = classes_for(
            rows,
            labels=labels,
            clusters=clusters,
            seed=seed,
            max_iter=max_iter,
            threads=threads,
            progress=stage.report,
        )
        stage.finish()
        protos = prototypes(rows, classes, count)
        steps.stage().finish()
        dist = prototype_distances(rows, classes, protos)
        steps.stage().finish()
    return dist, info


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """Moderate coreset selection with its scores and parameters; see `select`."""
    rows = open_rows(embeddings, check_finite=False)  # `scores` checks the values
    keep_count(budget, rows.n)  # refuse a bad budget before any work
    dist, info = scores(
        rows,
        labels=labels,
        clusters=clusters,
        seed=seed,
        max_iter=max_iter,
        threads=threads,
        progress=progress,
    )
    params = {**info, "seed": seed, "max_iter": max_iter}
    return Selection("moderate", median_band(dist, budget), dist, "moderate_distance", params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    seed: int = 0,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Moderate coreset: the rows with median-like distance to their class median.

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        labels: one class per row (array or .npy path); default: k-means classes.
        clusters: k for the k-means classes (default 10, at most N); not with labels.
        seed: seeds k-means; same seed, same indices.
        max_iter: k-means iteration cap.
        threads: cap on BLAS threads (with threadpoolctl installed).
        progress: progress(done, 1000), called as the stages finish.

    Returns:
        int64 indices, best first (rank nearest the median rank; see `median_band`).
    """
    return run(
        embeddings,
        budget,
        labels=labels,
        clusters=clusters,
        seed=seed,
        max_iter=max_iter,
        threads=threads,
        progress=progress,
    ).indices
