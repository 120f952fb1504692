"""Selection by budget: properties and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import zcore_fast
from hypothesis import given, settings
from hypothesis import strategies as st
from zcore_fast.select import budget_from_prune_rate, keep_count

scores_st = st.lists(
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1, width=32),
    min_size=1,
    max_size=300,
).map(lambda v: np.array(v, dtype=np.float32))


@settings(max_examples=200, deadline=None)
@given(scores_st, st.floats(0.001, 1.0))
def test_fraction_keeps_top_scores_in_order(scores: np.ndarray, budget: float) -> None:
    idx = zcore_fast.select(scores, budget)
    n = scores.size
    assert idx.dtype == np.int64
    assert idx.size == n - int(np.floor(round((1 - budget) * n, 6)))
    assert len(set(idx.tolist())) == idx.size
    pairs = [(-scores[i], i) for i in idx]
    assert pairs == sorted(pairs)  # by score desc, then lower index
    if idx.size < n:
        rest = np.setdiff1d(np.arange(n), idx)
        assert scores[idx].min() >= scores[rest].max()


@settings(max_examples=100, deadline=None)
@given(scores_st, st.integers(1, 300))
def test_count_budget(scores: np.ndarray, count: int) -> None:
    if count > scores.size:
        with pytest.raises(ValueError, match="larger than the pool"):
            zcore_fast.select(scores, count)
    else:
        assert zcore_fast.select(scores, count).size == count


def test_paper_prune_rate_mapping() -> None:
    assert keep_count(budget_from_prune_rate(0.9), 50_000) == 5_000
    assert keep_count(0.3, 10) == 3
    assert keep_count(1.0, 7) == 7
    assert keep_count(7, 7) == 7


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, float("nan"), 11])
def test_bad_budgets_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        zcore_fast.select(np.zeros(10), bad)


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="1-D"):
        zcore_fast.select(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="NaN"):
        zcore_fast.select(np.array([0.1, np.nan]), 1)
