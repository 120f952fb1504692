"""CCS stratified sampling against plain loops over strata."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import clustered
from zcore_fast.methods import ccs, run_method
from zcore_fast.select import keep_count


def oracle(scores: list[float], keep: int, mis_ratio: float, strata: int, descending: bool):
    """(kept pool, stratum of a score, rows to take per stratum), with loops."""
    n = len(scores)
    hard = sorted(range(n), key=lambda i: (-scores[i] if descending else scores[i], i))
    pool = hard[min(int(mis_ratio * n), n - keep) :]
    lo, hi = min(scores[i] for i in pool), max(scores[i] for i in pool)

    def stratum(v: float) -> int:
        if hi == lo:
            return 0
        return min(int((v - lo) / ((hi - lo) / strata)), strata - 1)

    sizes = [0] * strata
    for i in pool:
        sizes[stratum(scores[i])] += 1
    takes, left = [0] * strata, keep
    for served, s in enumerate(sorted(range(strata), key=lambda s: (sizes[s], s))):
        takes[s] = min(sizes[s], left // (strata - served))
        left -= takes[s]
    return set(pool), stratum, takes


@pytest.mark.parametrize(
    ("n", "budget", "mis_ratio", "strata", "descending"),
    [
        (500, 0.1, 0.0, 50, True),
        (500, 0.2, 0.3, 50, False),
        (97, 13, 0.1, 7, True),
        (60, 1.0, 0.5, 5, True),
    ],
)
def test_matches_the_oracle_stratum_by_stratum(n, budget, mis_ratio, strata, descending) -> None:
    scores = np.random.default_rng(n).gamma(2.0, size=n)  # skewed: strata of unequal size
    keep = keep_count(budget, n)
    pool, stratum, takes = oracle(scores.tolist(), keep, mis_ratio, strata, descending)
    got = ccs.stratified_sample(
        scores, budget, mis_ratio=mis_ratio, strata=strata, seed=1, descending=descending
    )
    assert got.size == keep == sum(takes) and np.unique(got).size == keep
    assert set(got.tolist()) <= pool
    per_stratum = np.bincount([stratum(scores[i]) for i in got], minlength=strata)
    assert per_stratum.tolist() == takes
    # Ordered hardest first by the score.
    assert np.all(np.diff(scores[got]) <= 0) if descending else np.all(np.diff(scores[got]) >= 0)


def test_hardest_end_is_dropped_first() -> None:
    scores = np.arange(10, dtype=float)
    assert set(ccs.stratified_sample(scores, 7, mis_ratio=0.3, descending=True).tolist()) == set(
        range(7)
    )
    assert set(ccs.stratified_sample(scores, 7, mis_ratio=0.3, descending=False).tolist()) == set(
        range(3, 10)
    )


def test_the_cut_never_leaves_fewer_rows_than_the_budget() -> None:
    scores = np.arange(10, dtype=float)
    got = ccs.stratified_sample(scores, 0.8, mis_ratio=0.5)  # 5 dropped would leave 5 < 8
    assert sorted(got.tolist()) == list(range(8))  # only the 2 hardest are dropped


def test_smallest_strata_are_served_first() -> None:
    # Stratum sizes 1, 2, 30 over 3 strata; budget 9 -> 1 + 2 + 6.
    scores = np.array([0.0] + [1.5, 1.6] + [3.0] * 30)
    got = ccs.stratified_sample(scores, 9, strata=3, seed=0)
    assert {0, 1, 2} <= set(got.tolist()) and got.size == 9


def test_sampling_within_a_stratum_is_uniform() -> None:
    scores = np.concatenate([np.zeros(10), np.ones(90)])  # 2 strata: 10 rows and 90 rows
    picks = np.concatenate([ccs.stratified_sample(scores, 6, strata=2, seed=s) for s in range(300)])
    counts = np.bincount(picks, minlength=100)
    assert counts[:10].sum() == counts[10:].sum() == 900  # 3 + 3 rows every time
    # Each row of the small stratum: expected 90 (sd 7.9); of the large: 10 (sd 3.1).
    assert 50 < counts[:10].min() and counts[:10].max() < 130
    assert counts[10:].max() < 30


def test_seeded_and_constant_scores() -> None:
    scores = np.random.default_rng(0).normal(size=200)
    a = ccs.stratified_sample(scores, 0.1, seed=3)
    assert np.array_equal(a, ccs.stratified_sample(scores, 0.1, seed=3))
    assert not np.array_equal(a, ccs.stratified_sample(scores, 0.1, seed=4))
    assert ccs.stratified_sample(np.ones(20), 5, seed=0).size == 5  # one stratum


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    budget=st.integers(0, 300),
)
def test_allocation_is_water_filling(sizes, budget) -> None:
    takes = ccs.allocate(np.array(sizes), budget)
    assert takes.sum() == min(budget, sum(sizes))
    assert np.all(takes <= sizes) and np.all(takes >= 0)
    # Strata not taken whole get equal shares (within the one row that integer
    # division leaves over), and no stratum gets more than that share.
    open_takes = takes[takes < np.array(sizes)]
    if open_takes.size:
        assert open_takes.max() - open_takes.min() <= 1
        assert np.all(takes <= open_takes.min() + 1)


def test_strata_edges() -> None:
    s = np.array([0.0, 0.5, 0.99, 1.0, 2.0])
    assert ccs.strata_of(s, 2).tolist() == [0, 0, 0, 1, 1]  # the maximum joins the last stratum
    assert ccs.strata_of(-s, 4).tolist()[-1] == 0


def test_over_any_score_through_the_registry() -> None:
    x = clustered(200, 6, seed=1)
    given_scores = np.linspace(0, 1, 200)
    sel = run_method("ccs", x, 0.1, score=given_scores, mis_ratio=0.2, descending=False)
    assert sel.params["score"] == "given" and sel.indices.min() >= 40  # lowest 20% dropped
    mod = run_method("ccs", x, 0.1, score="moderate", clusters=3, mis_ratio=0.1)
    assert mod.score_name == "moderate_distance" and mod.params["descending"] is True
    far = np.argsort(-mod.scores, kind="stable")[:20]
    assert not set(far.tolist()) & set(mod.indices.tolist())
    with pytest.raises(ValueError, match="unknown CCS score"):
        run_method("ccs", x, 0.1, score="loss")
    with pytest.raises(ValueError, match="one score per row"):
        run_method("ccs", x, 0.1, score=np.ones(5))
    with pytest.raises(ValueError, match="mis_ratio must be a fraction"):
        run_method("ccs", x, 0.1, score=given_scores, mis_ratio=1.0)
    assert math.isclose(sel.params["mis_ratio"], 0.2)
