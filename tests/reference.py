"""Plain NumPy ZCore (DESIGN.md section 2): slow, obviously correct oracles.

`reference_scores` draws its own randomness with NumPy, as the published code
does. `replay_raw_scores` applies given subspaces and sample points, so the
engine's result can be checked exactly for the same draws.
"""

from __future__ import annotations

import numpy as np


def subspace_distance(x: np.ndarray, dims: np.ndarray, point: np.ndarray) -> np.ndarray:
    """L1 distance of every row to `point` over `dims`, summed in float32 in
    `dims` order (the engine's arithmetic)."""
    total = np.zeros(x.shape[0], dtype=np.float32)
    for d, p in zip(dims, point):
        total = total + np.abs(x[:, d] - np.float32(p))
    return total


def sample_effect(
    x: np.ndarray, dims: np.ndarray, q: np.ndarray, redund_nn: int, redund_exp: float
) -> tuple[int, np.ndarray, np.ndarray]:
    """(coverage winner, penalised rows, penalties) of one sample."""
    dist = subspace_distance(x, dims, q)
    winner = int(np.argmin(dist))  # lowest index among ties
    nn_dist = subspace_distance(x, dims, x[winner, dims])
    others = np.delete(np.arange(x.shape[0]), winner)
    order = others[np.argsort(nn_dist[others], kind="stable")]  # ties: lower index
    if nn_dist[order[0]] == 0:
        return winner, order[:1], np.ones(1)
    nearest = order[:redund_nn]
    w = 1.0 / nn_dist[nearest].astype(np.float64) ** redund_exp
    return winner, nearest, w / w.sum()


def replay_raw_scores(
    x: np.ndarray, dims: np.ndarray, qs: np.ndarray, redund_nn: int, redund_exp: float
) -> np.ndarray:
    """Raw scores (no noise, not normalised) for the given draws."""
    scores = np.zeros(x.shape[0])
    for d, q in zip(dims, qs):
        winner, rows, pen = sample_effect(x, d, q, redund_nn, redund_exp)
        scores[winner] += 1
        scores[rows] -= pen
    return scores


def normalise(raw: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]."""
    return (raw - raw.min()) / (raw.max() - raw.min())


def reference_scores(
    x: np.ndarray,
    n_sample: int,
    *,
    sample_dim: int = 2,
    redund_nn: int = 1000,
    redund_exp: float = 4.0,
    rand_init: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """ZCore with NumPy's own random draws, like the published code."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    lo, md, hi = x.min(0), np.median(x, 0), x.max(0)
    scores = np.zeros(x.shape[0])
    for _ in range(n_sample):
        dims = rng.choice(x.shape[1], sample_dim, replace=False)
        q = rng.triangular(lo[dims], md[dims], hi[dims]).astype(np.float32)
        winner, rows, pen = sample_effect(x, dims, q, redund_nn, redund_exp)
        scores[winner] += 1
        scores[rows] -= pen
    if rand_init:
        scores += rng.uniform(0, 1, x.shape[0])
    return normalise(scores).astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (no ties expected: scores carry noise)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def clustered(n: int, d: int, seed: int, clusters: int = 8) -> np.ndarray:
    """Clustered Gaussian embeddings, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))).astype(np.float32)
