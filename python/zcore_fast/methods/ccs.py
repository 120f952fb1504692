"""CCS: coverage-centric stratified sampling (Zheng et al., "Coverage-centric
Coreset Selection for High Pruning Rates", ICLR 2023), over any score.

1. Drop the hardest floor(mis_ratio * N) rows (possibly mislabelled or
   outliers). Never so many that fewer than the budget remain: the cut is
   reduced to N - budget instead.
2. Cut the remaining score range [min, max] into `strata` equal-width strata
   (the top edge belongs to the last stratum).
3. Allocate the budget from the smallest stratum up: each gets an equal
   share of what is left, capped by its size; leftovers go to the larger
   strata (the reference's `bin_allocate`).
4. Sample uniformly without replacement within each stratum (seeded).

Which end is hardest (`descending=True`: the highest scores):
- zcore: high (rows that cover what nothing else does: outliers first);
- moderate distance: high (far from the class median);
- aum: low (small or negative margin) -> descending=False;
- forgetting, el2n: high.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import (
    ProgressFn,
    Selection,
    fraction,
    positive_int,
    rng_for,
    seed_int,
)
from zcore_fast.methods.proxy import HARDER_IS_HIGHER
from zcore_fast.methods.rows import Rows, open_rows
from zcore_fast.methods.scorers import score_rows
from zcore_fast.select import Budget, keep_count

#: The paper's number of strata.
STRATA = 50
#: Scores CCS can compute itself, and whether higher means harder.
SCORE_DESCENDING: dict[str, bool] = {"zcore": True, "moderate": True, **HARDER_IS_HIGHER}

ScoreSpec = Union[str, np.ndarray]


def strata_of(scores: np.ndarray, strata: int = STRATA) -> np.ndarray:
    """Stratum (0 .. strata - 1) of each score: equal-width bins over
    [min, max]; the maximum falls in the last bin; all-equal scores share bin 0."""
    s = np.asarray(scores, dtype=np.float64)
    strata = positive_int("strata", strata)
    lo, hi = float(s.min()), float(s.max())
    if hi <= lo:
        return np.zeros(s.size, dtype=np.int64)
    width = (hi - lo) / strata
    return np.minimum(((s - lo) / width).astype(np.int64), strata - 1)


def allocate(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Rows to draw from each stratum: smallest strata first, each taking an
    equal share of the budget left (capped by its size); ties in size are
    served in stratum order. Sums to min(budget, sizes.sum())."""
    sizes = np.asarray(sizes, dtype=np.int64)
    takes = np.zeros_like(sizes)
    left = int(budget)
    order = np.argsort(sizes, kind="stable")
    for i, stratum in enumerate(order):
        share = left // (sizes.size - i)
        takes[stratum] = min(int(sizes[stratum]), share)
        left -= int(takes[stratum])
    return takes


def stratified_sample(
    scores: np.ndarray,
    budget: Budget,
    *,
    mis_ratio: float = 0.0,
    strata: int = STRATA,
    seed: int = 0,
    descending: bool = True,
) -> np.ndarray:
    """CCS over `scores` (one per row).

    Args:
        scores: any per-row score, finite.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        mis_ratio: fraction of the hardest rows to drop first, in [0, 1).
        strata: number of equal-width score strata (the paper's 50).
        seed: seeds the sampling within strata; same seed, same indices.
        descending: True if a higher score is harder (dropped first); False
            for AUM. See the module docstring for each score.

    Returns:
        int64 indices, ordered hardest first by the score (ties: lower index).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    n = s.size
    keep = keep_count(budget, n)
    mis_ratio = fraction("mis_ratio", mis_ratio)
    hard_order = np.argsort(-s if descending else s, kind="stable")
    dropped = min(math.floor(mis_ratio * n), n - keep)
    pool = np.sort(hard_order[dropped:])
    bins = strata_of(s[pool], strata)
    takes = allocate(np.bincount(bins, minlength=strata), keep)
    rng = rng_for(seed_int(seed), 5)
    chosen = []
    for stratum in np.flatnonzero(takes):
        members = pool[bins == stratum]
        chosen.append(members[rng.permutation(members.size)[: takes[stratum]]])
    picked = np.concatenate(chosen)
    rank = -s[picked] if descending else s[picked]
    return picked[np.lexsort((picked, rank))].astype(np.int64)


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    score: ScoreSpec = "zcore",
    descending: bool | None = None,
    mis_ratio: float = 0.0,
    strata: int = STRATA,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    **score_options: Any,
) -> Selection:
    """CCS selection with its scores and parameters; see `select`."""
    # Each scorer checks the values it reads; given scores need only N.
    rows = open_rows(embeddings, check_finite=False)
    keep_count(budget, rows.n)  # refuse a bad budget before scoring
    mis_ratio = fraction("mis_ratio", mis_ratio)
    strata = positive_int("strata", strata)
    if isinstance(score, str):
        if score not in SCORE_DESCENDING:
            raise ValueError(
                f"unknown CCS score {score!r}; use one of {', '.join(SCORE_DESCENDING)} or "
                "pass an array of scores"
            )
        values, name, info = score_rows(
            score, rows, seed=seed, threads=threads, progress=progress, **score_options
        )
        hard_high = SCORE_DESCENDING[score] if descending is None else bool(descending)
    else:
        if score_options:
            raise ValueError(
                f"options {sorted(score_options)} configure a score CCS computes; with "
                "an array of scores there is nothing to configure"
            )
        values = np.asarray(score, dtype=np.float64)
        if values.shape != (rows.n,):
            raise ValueError(
                f"scores have shape {values.shape}; expected one score per row ({rows.n},)"
            )
        name, info = "given", {}
        hard_high = True if descending is None else bool(descending)
    indices = stratified_sample(
        values, budget, mis_ratio=mis_ratio, strata=strata, seed=seed, descending=hard_high
    )
    params = {
        "score": name,
        "descending": hard_high,
        "mis_ratio": mis_ratio,
        "strata": strata,
        "seed": seed,
        **info,
    }
    return Selection("ccs", indices, values, name, params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    score: ScoreSpec = "zcore",
    descending: bool | None = None,
    mis_ratio: float = 0.0,
    strata: int = STRATA,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    **score_options: Any,
) -> np.ndarray:
    """CCS: stratified sampling over a score of the embeddings' rows.

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        score: "zcore" (default), "moderate" (distance to the class median),
            "aum", "forgetting", "el2n" (ELFS's proxy dynamics), or an array of
            N precomputed scores.
        descending: whether higher scores are harder; default per score (see
            the module docstring), True for an array.
        mis_ratio: fraction of the hardest rows dropped first (default 0; the
            CCS paper uses up to 0.3 at 90 % pruning with AUM).
        strata: number of score strata (default 50).
        seed: seeds the score (where random) and the sampling.
        threads, progress: passed to the scorer.
        **score_options: the scorer's options (zcore: n_sample, ...; moderate,
            aum, ...: labels, clusters, epochs, ...).

    Returns:
        int64 indices, ordered hardest first by the score.
    """
    return run(
        embeddings,
        budget,
        score=score,
        descending=descending,
        mis_ratio=mis_ratio,
        strata=strata,
        seed=seed,
        threads=threads,
        progress=progress,
        **score_options,
    ).indices
