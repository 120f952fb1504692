"""Moderate coreset against per-class loops written from the paper's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import clustered
from zcore_fast.methods import moderate
from zcore_fast.methods.kmeans import kmeans


def oracle_distances(x: np.ndarray, labels: np.ndarray) -> list[float]:
    """Distance of each row to the coordinate-wise median of its class, by loops."""
    medians = {}
    for c in set(labels.tolist()):
        members = [row for row, lab in zip(x.tolist(), labels.tolist()) if lab == c]
        m = len(members)
        medians[c] = [
            (sorted(col)[(m - 1) // 2] + sorted(col)[m // 2]) / 2 for col in zip(*members)
        ]
    return [
        math.sqrt(sum((v - mu) ** 2 for v, mu in zip(row, medians[lab])))
        for row, lab in zip(x.tolist(), labels.tolist())
    ]


def oracle_band(distances: list[float], rate: float) -> set[int]:
    """The reference's selection (selection.py): sort by distance, keep the
    quantile band [0.5 - rate/2, 0.5 + rate/2)."""
    order = sorted(range(len(distances)), key=lambda i: distances[i])
    n = len(distances)
    return set(order[round(n * (0.5 - rate / 2)) : round(n * (0.5 + rate / 2))])


@pytest.mark.parametrize(("n", "rate"), [(100, 0.1), (200, 0.3), (120, 0.5)])
def test_matches_the_reference_with_labels(n, rate) -> None:
    x = clustered(n, 5, seed=n)
    labels = np.random.default_rng(n).integers(0, 4, n)
    want = oracle_distances(x, labels)
    sel = moderate.run(x, rate, labels=labels)
    np.testing.assert_allclose(sel.scores, want, rtol=1e-5)
    assert set(sel.indices.tolist()) == oracle_band(want, rate)


def test_label_free_classes_are_kmeans_clusters() -> None:
    x = clustered(150, 4, seed=2)
    clusters = kmeans(x, 6, seed=9).labels
    got = moderate.run(x, 0.2, clusters=6, seed=9)
    np.testing.assert_allclose(got.scores, oracle_distances(x, clusters), rtol=1e-5)
    assert got.params["classes_from"] == "kmeans" and got.params["clusters"] == 6
    default = moderate.run(x, 0.2)
    assert default.params["clusters"] == 10


def test_order_is_nearest_the_median_rank_first() -> None:
    d = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0])  # sorted: rows 5 1 3 2 4 0
    # (N - 1) / 2 = 2.5: ranks 2 and 3 (rows 3, 2) first, then ranks 1 and 4.
    assert moderate.median_band(d, 6).tolist() == [3, 2, 1, 4, 5, 0]
    assert moderate.median_band(d, 1).tolist() == [3]
    assert moderate.median_band(np.ones(4), 2).tolist() == [1, 2]  # ties: by index


def test_classes_of_one_row_and_string_labels(tmp_path) -> None:
    x = clustered(8, 3, seed=3)
    singletons = moderate.run(x, 0.5, labels=np.arange(8))
    assert np.all(singletons.scores == 0)  # each row is its own median
    names = np.array(["cat", "dog"] * 4)
    np.save(tmp_path / "labels.npy", names)
    from_file = moderate.run(x, 0.5, labels=tmp_path / "labels.npy")
    assert np.array_equal(from_file.indices, moderate.run(x, 0.5, labels=names == "dog").indices)


def test_budget_of_everything_and_of_one_row() -> None:
    x = clustered(31, 3, seed=4)
    assert sorted(moderate.select(x, 1.0, labels=np.zeros(31, int)).tolist()) == list(range(31))
    one = moderate.run(x, 1, labels=np.zeros(31, int))
    assert one.indices.tolist() == [int(np.argsort(one.scores, kind="stable")[15])]


def test_label_errors() -> None:
    x = clustered(10, 2, seed=0)
    with pytest.raises(ValueError, match="labels have 9 entries but the embeddings have 10"):
        moderate.select(x, 0.5, labels=np.zeros(9))
    with pytest.raises(ValueError, match="labels or clusters, not both"):
        moderate.select(x, 0.5, labels=np.zeros(10), clusters=2)
    with pytest.raises(ValueError, match="NaN"):
        moderate.select(x, 0.5, labels=np.full(10, np.nan))
    with pytest.raises(FileNotFoundError, match="no such labels file"):
        moderate.select(x, 0.5, labels="/nope/labels.npy")
