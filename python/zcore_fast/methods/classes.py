"""Where Moderate and ELFS get classes from: the user's labels, or k-means
clusters of the embeddings when there are none (the label-free default)."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from zcore_fast.methods.base import ProgressFn
from zcore_fast.methods.kmeans import MAX_ITER, check_clusters, kmeans
from zcore_fast.methods.rows import Rows
from zcore_fast.npyfile import open_npy

#: Default k for label-free classes. The methods' papers cluster into the
#: number of classes, and the pools this project is measured on (CIFAR-10,
#: EuroSAT, Fashion-MNIST) have 10; k-means cost grows linearly with k.
DEFAULT_CLUSTERS = 10

Labels = Union[np.ndarray, "os.PathLike[str]", str, list]


def as_class_ids(labels: Labels, n: int) -> tuple[np.ndarray, int]:
    """(class id of each row in [0, C), C) from `labels`: any 1-D array of N
    hashable values (ints, strings, ...) or a path to a .npy file of them."""
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such labels file; check the path")
        labels = open_npy(path, name=f"labels file {path}", what="labels")
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels have shape {arr.shape}; expected one label per row (1-D)")
    if arr.shape[0] != n:
        raise ValueError(
            f"labels have {arr.shape[0]} entries but the embeddings have {n} rows; give one "
            "label per row, in row order"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("labels contain NaN or Inf; every row needs a class")
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        # As `evaluate` refuses them: fractional values are scores, not classes
        # (each distinct value would be a class of its own).
        raise ValueError(
            "labels are floats that are not whole numbers; class labels must be integers or strings"
        )
    if arr.dtype.kind not in "biufUSO":
        raise TypeError(f"labels have dtype {arr.dtype}; use integers or strings")
    _, ids = np.unique(arr, return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    return ids, int(ids.max()) + 1


def classes_for(
    rows: Rows,
    *,
    labels: Labels | None,
    clusters: int | None,
    seed: int,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """(class ids, number of classes, what was done) for `rows`.

    With `labels`, their classes (`clusters` must then be None). Without,
    k-means with `clusters` clusters (default min(DEFAULT_CLUSTERS, N)).
    """
    if labels is not None:
        if clusters is not None:
            raise ValueError(
                "give labels or clusters, not both: with labels the classes are the labels'"
            )
        ids, count = as_class_ids(labels, rows.n)
        return ids, count, {"classes_from": "labels", "classes": count}
    k = min(DEFAULT_CLUSTERS, rows.n) if clusters is None else check_clusters(clusters, rows.n)
    km = kmeans(rows, k, seed=seed, max_iter=max_iter, threads=threads, progress=progress)
    info = {
        "classes_from": "kmeans",
        "clusters": k,
        "kmeans_iterations": km.n_iter,
        "kmeans_converged": km.converged,
    }
    return km.labels, k, info
