"""2-D projections of a pool for the score map: PCA in NumPy, UMAP when installed."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from zcore_fast.evaluation.data import load_matrix, row_count
from zcore_fast.io import Embeddings

_METHODS = ("auto", "pca", "umap")


@dataclass(frozen=True)
class Projection:
    """Rows drawn (sorted int64 indices into the pool), their 2-D coordinates,
    the method used ("pca" or "umap"), and axis labels (PCA's say how much of
    the variance each axis explains)."""

    rows: np.ndarray
    coords: np.ndarray
    method: str
    axis_labels: tuple[str, str]


def project(
    embeddings: Embeddings, *, max_points: int = 20_000, method: str = "auto", seed: int = 0
) -> Projection:
    """Projects the pool (or a seeded uniform subsample of `max_points` rows
    when larger) to 2-D. `method` "auto" uses UMAP when the `umap` package
    (umap-learn) is importable, else PCA."""
    if method not in _METHODS:
        raise ValueError(f"projection must be one of {', '.join(_METHODS)}, got {method!r}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 3:
        raise ValueError(f"max_points must be an integer >= 3, got {max_points!r}")
    has_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not has_umap:
        raise ImportError("projection='umap' needs umap-learn: pip install umap-learn")
    n = row_count(embeddings)
    if n < 3:
        raise ValueError(f"a score map needs at least 3 rows, got {n}")
    rows = np.arange(n, dtype=np.int64)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    x = load_matrix(embeddings, rows=None if rows.size == n else rows)
    if method == "umap" or (method == "auto" and has_umap):
        import umap

        coords = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
        return Projection(rows, np.asarray(coords, dtype=np.float64), "umap", ("UMAP 1", "UMAP 2"))
    coords, explained = pca_2d(x)
    labels = (
        f"PC 1 ({explained[0]:.1%} of variance)",
        f"PC 2 ({explained[1]:.1%} of variance)",
    )
    return Projection(rows, coords, "pca", labels)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the rows of `x` and the share
    of the variance each explains. Deterministic: each axis's sign is fixed
    so that its largest loading is positive."""
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    # SVD of the centred rows; for N >> D the D x D covariance is much cheaper
    # and its eigenvectors are the same right singular vectors.
    if xc.shape[0] > 4 * xc.shape[1]:
        cov = xc.T @ xc
        vals, vecs = np.linalg.eigh(cov)
        top = vecs[:, ::-1][:, :2]
        var = np.clip(vals[::-1], 0.0, None)
    else:
        _, sing, vt = np.linalg.svd(xc, full_matrices=False)
        top = vt[:2].T
        var = sing**2
    if top.shape[1] < 2:  # one dimension: the second axis is flat
        top = np.hstack([top, np.zeros((top.shape[0], 1))])
        var = np.append(var, 0.0)
    flip = np.sign(top[np.argmax(np.abs(top), axis=0), [0, 1]])
    top = top * np.where(flip == 0, 1.0, flip)
    total = float(var.sum())
    explained = var[:2] / total if total > 0 else np.zeros(2)
    return xc @ top, explained
