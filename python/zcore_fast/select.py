"""Budgets and selection of the top-scored rows."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Union

import numpy as np

Budget = Union[int, float]


def keep_count(budget: Budget, n: int) -> int:
    """Rows kept for `budget` out of `n`.

    A float in (0, 1] is a fraction: it keeps ceil(budget * n) rows, which
    equals the paper's N - floor(p * N) for prune rate p = 1 - budget. An
    int >= 1 is a count.
    """
    if isinstance(budget, bool) or not isinstance(budget, (Integral, Real)):
        raise TypeError(f"budget must be a number, got {type(budget).__name__}")
    if isinstance(budget, Integral):
        count = int(budget)
        if count < 1:
            raise ValueError(
                f"budget must be at least 1 row, got {count}; give a row count >= 1 or a "
                "fraction in (0, 1]"
            )
        if count > n:
            raise ValueError(
                f"budget of {count} rows is larger than the pool ({n} rows); give at most {n} "
                "rows or a fraction in (0, 1]"
            )
        return count
    frac = float(budget)
    if not math.isfinite(frac) or frac <= 0.0:
        raise ValueError(f"budget must be a fraction in (0, 1] or a count >= 1, got {budget}")
    if frac > 1.0:
        if frac.is_integer():
            return keep_count(int(frac), n)
        raise ValueError(
            f"budget {budget} is a fraction above 1; use a fraction in (0, 1] or a whole count"
        )
    # Round away float noise (0.3 * 10 == 3.0000000000000004) before ceil.
    return max(1, math.ceil(round(frac * n, 6)))


def budget_from_prune_rate(prune_rate: float) -> float:
    """The budget fraction for the paper's prune rate p (budget = 1 - p)."""
    if isinstance(prune_rate, bool) or not isinstance(prune_rate, Real):
        raise TypeError(f"prune rate must be a number, got {type(prune_rate).__name__}")
    if not (0.0 <= prune_rate < 1.0):
        raise ValueError(
            f"prune rate must be in [0, 1), got {prune_rate}; it is the fraction of rows "
            "dropped (0.9 keeps 10%)"
        )
    return 1.0 - prune_rate


def select(scores: np.ndarray, budget: Budget) -> np.ndarray:
    """Indices of the rows to keep: the highest scores first, ties broken by
    the lower index. `budget` is a fraction in (0, 1] or a count >= 1.

    Returns int64 indices, ordered by score (highest first).
    """
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError("scores are empty")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise TypeError(f"scores must be real numbers, got dtype {s.dtype}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    keep = keep_count(budget, s.size)
    # A stable sort of the negated scores keeps lower indices first on ties.
    order = np.argsort(-s.astype(np.float64), kind="stable")
    return order[:keep].astype(np.int64)
