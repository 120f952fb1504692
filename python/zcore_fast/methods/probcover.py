"""ProbCover (Yehuda, Dekel, Hacohen and Weinshall, "Active Learning Through a
Covering Lens", NeurIPS 2022), initial pool selection.

On L2-normalised embeddings (the paper's features live on the unit sphere):
1. delta without labels: k-means pseudo-labels (K = `clusters`, default 10),
   and the largest delta whose balls are at least alpha = 0.95 pure. The
   ball of x is pure when it holds no row of another pseudo-label, i.e. when
   delta <= d_other(x), x's distance to the nearest row of another cluster;
   so the purity of delta is the share of rows with d_other >= delta and the
   largest delta with purity >= alpha is a quantile of d_other, found exactly
   (the paper scans a grid of deltas for the same quantity).
2. the ball graph: an edge x -> y when |x - y| < delta (x -> x included);
3. greedy maximum coverage: repeatedly the row whose ball holds the most
   rows not yet covered (ties: lower row), whose ball's rows become covered.
   When every row is covered and budget remains, coverage starts over
   (every row uncovered again, chosen rows never again), a second cover.

Cost: two exact passes over all pairs (N^2 D multiply-adds in float32
matrix products) and the graph's edges in memory; practical to about
N = 10^5 on one machine (README "Low-budget methods").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import ProgressFn, Selection, Steps, blas_threads, seed_int
from zcore_fast.methods.classes import DEFAULT_CLUSTERS
from zcore_fast.methods.kmeans import MAX_ITER, check_clusters, kmeans
from zcore_fast.methods.rows import Rows, open_resident
from zcore_fast.select import Budget, keep_count

#: Required ball purity (the paper's alpha).
ALPHA = 0.95
#: Bytes of float32 distances per block of rows.
BLOCK_BYTES = 1 << 27
#: Refuse graphs with more edges than this (8 bytes each in memory).
MAX_EDGES = 1 << 30


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _blocks(x: np.ndarray):  # type: ignore[no-untyped-def]
    """(first row, squared distances of a block of rows to all rows)."""
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    step = max(1, BLOCK_BYTES // (4 * n))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        d = x[lo:hi] @ x.T
        d *= -2.0
        d += sq[lo:hi, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        d[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        yield lo, d


def other_label_distance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance from each row to the nearest row of another label, float64
    (inf when every row has the same label)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for lo, d in _blocks(x):
        hi = lo + d.shape[0]
        same = labels[lo:hi, None] == labels[None, :]
        d[same] = np.inf
        out[lo:hi] = np.sqrt(d.min(axis=1))
    return out


def purity_delta(d_other: np.ndarray, alpha: float = ALPHA) -> float:
    """The largest delta with at least ceil(alpha N) rows having d_other >= delta."""
    n = d_other.size
    m = max(1, math.ceil(round(alpha * n, 9)))
    return float(np.sort(d_other)[n - m])


def ball_graph(x: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(starts (N + 1,), members): ball of row i = members[starts[i]:starts[i+1]],
    the rows at distance < delta (i itself included), ascending."""
    n = x.shape[0]
    counts = np.empty(n, dtype=np.int64)
    pieces: list[np.ndarray] = []
    total = 0
    for lo, d in _blocks(x):
        hit = d < delta * delta
        rows, cols = np.nonzero(hit)
        counts[lo : lo + d.shape[0]] = np.bincount(rows, minlength=d.shape[0])
        total += cols.size
        if total > MAX_EDGES:
            raise MemoryError(
                f"the ProbCover ball graph at delta={delta:.4g} has over {MAX_EDGES:,} edges; "
                "use fewer rows or a smaller alpha"
            )
        pieces.append(cols.astype(np.int64))
    starts = np.concatenate(([0], np.cumsum(counts)))
    return starts, np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


def max_cover(starts: np.ndarray, members: np.ndarray, budget: int) -> np.ndarray:
    """Greedy maximum coverage over the balls; see the module docstring."""
    n = starts.size - 1
    # The graph is symmetric up to rounding; the transpose is built, not assumed.
    owners = np.repeat(np.arange(n), np.diff(starts))
    by_member = np.argsort(members, kind="stable")
    t_starts = np.concatenate(([0], np.cumsum(np.bincount(members, minlength=n))))
    t_owner = owners[by_member]
    covered = np.zeros(n, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    degree = np.diff(starts).astype(np.int64)
    out: list[int] = []
    while len(out) < budget:
        gain = np.where(chosen, -1, degree)
        best = int(np.argmax(gain))  # first maximum: the lower row
        if gain[best] <= 0:
            # Everything covered: start a new cover.
            covered[:] = False
            degree = np.diff(starts).astype(np.int64)
            continue
        chosen[best] = True
        out.append(best)
        ball = members[starts[best] : starts[best + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        if new.size:
            seg = np.concatenate([t_owner[t_starts[y] : t_starts[y + 1]] for y in new])
            degree -= np.bincount(seg, minlength=n)
    return np.array(out, dtype=np.int64)


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    clusters: int | None = None,
    alpha: float = ALPHA,
    delta: float | None = None,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """ProbCover selection with its ball sizes and parameters; see `select`."""
    rows = open_resident(embeddings)
    seed = seed_int(seed)
    keep = keep_count(budget, rows.n)
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    params: dict[str, Any] = {"seed": seed, "alpha": alpha}
    steps = Steps(progress, (3, 3, 3, 1))
    with blas_threads(threads):
        x = normalise(rows.dense())
        if delta is None:
            k = (
                min(DEFAULT_CLUSTERS, rows.n)
                if clusters is None
                else check_clusters(clusters, rows.n)
            )
            stage = steps.stage()
            km = kmeans(x, k, seed=seed, max_iter=max_iter, threads=threads, progress=stage.report)
            stage.finish()
            d_other = other_label_distance(x, km.labels)
            delta = purity_delta(d_other, alpha)
            if not math.isfinite(delta):  # one cluster: every ball is pure
                delta = 2.0
            steps.stage().finish()
            params.update(clusters=k, kmeans_iterations=km.n_iter)
        else:
            delta = float(delta)
            if not (math.isfinite(delta) and delta > 0):
                raise ValueError(f"delta must be a positive number, got {delta}")
            steps.stage().finish()
            steps.stage().finish()
        starts, members = ball_graph(x, delta)
        steps.stage().finish()
        chosen = max_cover(starts, members, keep)
        steps.stage().finish()
    ball = np.diff(starts)
    params.update(delta=delta, mean_ball_size=float(ball.mean()))
    return Selection("probcover", chosen, ball.astype(np.float32), "ball_size", params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    clusters: int | None = None,
    alpha: float = ALPHA,
    delta: float | None = None,
    max_iter: int = MAX_ITER,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """ProbCover: greedy maximum coverage of delta-balls.

    Args:
        embeddings: what `zcore_fast.score` accepts (L2-normalised here).
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: seeds the k-means pseudo-labels; same seed, same indices.
        clusters: k of the pseudo-labels (default 10).
        alpha: required ball purity (default 0.95).
        delta: ball radius; default chosen by purity (then no k-means).
        max_iter: k-means iteration cap.
        threads: cap on BLAS threads (with threadpoolctl installed).
        progress: progress(done, 1000).

    Returns:
        int64 indices in the order the greedy chose them.
    """
    return run(
        embeddings,
        budget,
        seed=seed,
        clusters=clusters,
        alpha=alpha,
        delta=delta,
        max_iter=max_iter,
        threads=threads,
        progress=progress,
    ).indices
