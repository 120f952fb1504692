"""k-means against a naive Lloyd's loop, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from reference import clustered
from zcore_fast.methods import rows as rows_module
from zcore_fast.methods.kmeans import assign, init_centroids, kmeans


def naive_lloyd(x: np.ndarray, init: np.ndarray, max_iter: int = 100):
    """Lloyd's algorithm written out: nearest centre by explicit distances
    (lower centre on ties), then means, until the labels stop changing."""
    x = x.astype(np.float64)
    centres = init.astype(np.float64)
    labels = None
    for _ in range(max_iter):
        new = np.array([int(np.argmin(((centres - row) ** 2).sum(axis=1))) for row in x])
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        centres = np.array([x[labels == j].mean(axis=0) for j in range(len(centres))])
    return labels, centres


def test_matches_naive_lloyd_from_the_same_start() -> None:
    x = clustered(400, 6, seed=1, clusters=5)
    start = init_centroids(x, 5, seed=2)
    want_labels, want_centres = naive_lloyd(x, start)
    got = kmeans(x, 5, init=start, tol=0)
    assert np.array_equal(got.labels, want_labels)
    np.testing.assert_allclose(got.centroids, want_centres, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        got.sq_distances, ((x - want_centres[want_labels]) ** 2).sum(axis=1), rtol=1e-3, atol=1e-3
    )
    assert got.converged


def test_default_start_is_kmeans_plus_plus_on_rows_of_the_data() -> None:
    x = clustered(500, 4, seed=3, clusters=6)
    start = init_centroids(x, 6, seed=7)
    assert all(any(np.array_equal(c, row) for row in x) for c in start)
    assert len({tuple(c) for c in start}) == 6
    assert np.array_equal(kmeans(x, 6, seed=7).labels, kmeans(x, 6, init=start).labels)
    assert not np.array_equal(init_centroids(x, 6, seed=8), start)


def test_finds_well_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 50)
    x = (np.eye(4)[truth] * 20 + rng.normal(size=(200, 4))).astype(np.float32)
    labels = kmeans(x, 4, seed=0).labels
    # The same partition up to renaming: each true cluster maps to one label.
    assert all(np.unique(labels[truth == t]).size == 1 for t in range(4))
    assert np.unique(labels).size == 4


@pytest.mark.parametrize("stream", [False, True])
def test_blocks_memmaps_and_float16_do_not_change_the_result(tmp_path, monkeypatch, stream):
    x = clustered(300, 5, seed=4).astype(np.float16)
    whole = kmeans(x.astype(np.float32), 4, seed=1)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(rows_module, "BLOCK_VALUES", 7 * 5)  # 7-row blocks, a ragged last one
    if stream:  # as when a float32 copy would not fit in memory
        monkeypatch.setattr(rows_module, "resident", lambda rows: rows)
    blocked = kmeans(tmp_path / "x.npy", 4, seed=1)
    assert np.array_equal(blocked.labels, whole.labels)
    np.testing.assert_allclose(blocked.centroids, whole.centroids, rtol=1e-6, atol=1e-6)


def test_one_cluster_per_row_and_one_cluster() -> None:
    x = clustered(12, 3, seed=5)
    single = kmeans(x, 12, seed=0)
    assert sorted(single.labels.tolist()) == list(range(12)) and single.inertia == 0
    one = kmeans(x, 1, seed=0)
    assert np.all(one.labels == 0)
    np.testing.assert_allclose(one.centroids[0], x.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_duplicates_leave_no_cluster_unexplained() -> None:
    # 3 distinct rows, 5 clusters: 2 clusters must stay empty, nothing breaks.
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], dtype=np.float32), 4, axis=0)
    result = kmeans(x, 5, seed=0)
    assert result.inertia == 0
    assert np.unique(result.labels).size == 3  # duplicates share a cluster


def test_empty_cluster_is_reseeded_at_the_farthest_row() -> None:
    x = np.array([[0.0], [0.1], [0.2], [10.0]], dtype=np.float32)
    # Centre 1 starts far from every row: it is empty after the first pass and
    # must move to the row worst served (10.0), which then forms its own cluster.
    result = kmeans(x, 2, init=np.array([[0.1], [100.0]], dtype=np.float32))
    assert result.labels.tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(result.centroids.ravel(), [0.1, 10.0], rtol=1e-6)


def test_assign_is_the_nearest_centroid() -> None:
    x = clustered(50, 3, seed=6)
    c = x[[0, 10, 20]]
    labels, sq = assign(x, c)
    d = ((x[:, None, :] - c[None]) ** 2).sum(axis=2)
    assert np.array_equal(labels, d.argmin(axis=1))
    np.testing.assert_allclose(sq, d.min(axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (11, ValueError, "clusters=11 is more than the 10 rows"),
        (0, ValueError, "clusters must be at least 1"),
        (2.5, TypeError, "clusters must be an integer"),
    ],
)
def test_bad_cluster_counts(k, error, message) -> None:
    with pytest.raises(error, match=message):
        kmeans(clustered(10, 2, seed=0), k)
