"""TypiClust, ProbCover, herding and auto against small oracles written from
the papers' definitions, on fresh random inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from reference import clustered
from zcore_fast.methods import auto, herding, neighbors, probcover, run_method, typiclust
from zcore_fast.methods.kmeans import kmeans


def pairwise(x: np.ndarray) -> np.ndarray:
    """Euclidean distances, float64, one pair at a time (obviously right)."""
    x = x.astype(np.float64)
    n = x.shape[0]
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d[i, j] = math.sqrt(float(((x[i] - x[j]) ** 2).sum()))
    return d


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_knn_matches_brute_force(seed: int, backend: str) -> None:
    if backend == "faiss" and neighbors.faiss_module() is None:
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    dist, idx = neighbors.knn(x, 7, backend=backend)
    d = pairwise(x)
    np.fill_diagonal(d, np.inf)
    want = np.argsort(d, axis=1, kind="stable")[:, :7]
    assert np.array_equal(idx, want)
    assert np.allclose(dist, np.take_along_axis(d, want, axis=1), atol=1e-4)


def typicality_oracle(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 / mean distance to the min(20, size // 2) nearest rows of the cluster."""
    d = pairwise(x)
    out = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        same = [j for j in range(x.shape[0]) if labels[j] == labels[i] and j != i]
        k = min(20, (len(same) + 1) // 2)
        if k >= 1:
            out[i] = 1.0 / np.mean(sorted(d[i, j] for j in same)[:k])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_typiclust_picks_the_most_typical_row_of_each_cluster(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    labels = rng.integers(0, 6, size=150)
    idx, typ = typiclust.select_from_clusters(x, labels, 6)
    want = typicality_oracle(x, labels)
    assert np.allclose(typ, want, rtol=1e-4)
    # The paper's rule at budget = K: one row per cluster, its most typical.
    assert sorted(idx.tolist()) == sorted(
        int(np.flatnonzero(labels == c)[np.argmax(want[labels == c])]) for c in range(6)
    )
    sizes = np.bincount(labels)
    firsts = [int(labels[i]) for i in idx]
    assert [sizes[c] for c in firsts] == sorted(sizes, reverse=True)  # largest first


def test_typiclust_quotas_follow_cluster_sizes() -> None:
    sizes = np.array([50, 30, 15, 4, 1])
    q = typiclust.quotas(sizes, 20)
    assert q.sum() == 20 and q[3] == 0 and q[4] == 0  # tiny clusters skipped
    assert q[0] > q[1] > q[2] >= 1
    assert typiclust.quotas(sizes, 2).tolist() == [1, 1, 0, 0, 0]
    assert typiclust.quotas(sizes, 100).sum() == 100  # everything: all clusters


def test_typiclust_run_uses_kmeans_with_budget_clusters() -> None:
    x = clustered(400, 6, seed=3)
    sel = typiclust.run(x, 8, seed=2, normalise=False)
    km = kmeans(x, 8, seed=2)
    want, _ = typiclust.select_from_clusters(x, km.labels, 8)
    assert np.array_equal(sel.indices, want) and sel.params["clusters"] == 8
    assert sel.params["normalise"] is False
    # cap: K <= N / 40
    assert typiclust.run(x, 50, seed=2).params["clusters"] == 10


@pytest.mark.parametrize("seed", range(3))
def test_typiclust_normalises_rows_by_default(seed: int) -> None:
    # The reference's features are L2-normalised: k-means and typicality on
    # the unit sphere. Oracle: rows divided by their norms in float64, the
    # same k-means, brute-force typicality.
    rng = np.random.default_rng(200 + seed)
    x = clustered(300, 5, seed=seed) + 3.0  # off-centre: norms matter
    x *= rng.uniform(0.2, 5.0, size=(x.shape[0], 1)).astype(np.float32)
    unit = (x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
    sel = typiclust.run(x, 7, seed=seed)
    assert sel.params["normalise"] is True
    km = kmeans(unit, 7, seed=seed)
    want = typicality_oracle(unit, km.labels)
    picks = [
        int(np.flatnonzero(km.labels == c)[np.argmax(want[km.labels == c])])
        for c in range(7)
        if np.sum(km.labels == c) > typiclust.MIN_CLUSTER_SIZE
    ]
    assert sorted(sel.indices.tolist()) == sorted(picks)
    # Scaling any row by a positive factor changes nothing.
    scaled = x * rng.uniform(0.5, 2.0, size=(x.shape[0], 1)).astype(np.float32)
    assert np.array_equal(typiclust.run(scaled, 7, seed=seed).indices, sel.indices)
    # Raw geometry on request: other rows here, where norms vary 25-fold.
    raw = typiclust.run(x, 7, seed=seed, normalise=False)
    assert raw.params["normalise"] is False
    assert sorted(raw.indices.tolist()) != sorted(picks)


def probcover_oracle(x: np.ndarray, labels: np.ndarray, budget: int, alpha: float) -> list[int]:
    """The paper's steps with brute force: purity of every candidate delta,
    the ball graph, greedy coverage recounted from scratch each step."""
    d = pairwise(x)
    n = x.shape[0]
    # Candidate deltas: every distance between rows of different labels.
    cands = sorted({d[i, j] for i in range(n) for j in range(n) if labels[i] != labels[j]})

    def purity(delta: float) -> float:
        pure = [all(labels[j] == labels[i] for j in range(n) if d[i, j] < delta) for i in range(n)]
        return float(np.mean(pure))

    delta = max(c for c in cands if purity(c) >= alpha)
    balls = [{j for j in range(n) if d[i, j] < delta} for i in range(n)]
    covered: set[int] = set()
    chosen: list[int] = []
    while len(chosen) < budget:
        gains = [-1 if i in chosen else len(balls[i] - covered) for i in range(n)]
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            covered = set()
            continue
        chosen.append(best)
        covered |= balls[best]
    return chosen


@pytest.mark.parametrize("seed", range(4))
def test_probcover_matches_the_oracle(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    x = probcover.normalise(rng.normal(size=(70, 3)).astype(np.float32))
    labels = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    budget = 25  # past a full cover: the restart is checked too
    delta = probcover.purity_delta(probcover.other_label_distance(x, labels), 0.9)
    starts, members = probcover.ball_graph(x, delta)
    got = probcover.max_cover(starts, members, budget)
    assert got.tolist() == probcover_oracle(x, labels, budget, 0.9)


def test_probcover_run_reports_delta_and_uses_no_labels() -> None:
    x = clustered(300, 8, seed=1)
    sel = run_method("probcover", x, 30, seed=0)
    assert sel.indices.size == 30 and np.unique(sel.indices).size == 30
    assert 0 < sel.params["delta"] <= 2 and sel.params["clusters"] == 10
    with pytest.raises(ValueError, match="does not use labels"):
        run_method("probcover", x, 30, labels=np.zeros(300))


def herding_oracle(x: np.ndarray, k: int, budget: int) -> list[int]:
    """Plain greedy on the dense kernel matrix W[x, s] = k(x, s) if s is x or
    one of x's k nearest rows, else 0; sigma = median k-NN distance."""
    d = pairwise(x)
    n = x.shape[0]
    dd = d.copy()
    np.fill_diagonal(dd, np.inf)
    nn = np.argsort(dd, axis=1, kind="stable")[:, :k]
    sigma = float(np.median(np.take_along_axis(d, nn, axis=1)))
    w = np.zeros((n, n))
    for i in range(n):
        w[i, i] = 1.0
        for j in nn[i]:
            w[i, j] = math.exp(-(d[i, j] ** 2) / (2 * sigma**2))
    cover = np.zeros(n)
    chosen: list[int] = []
    for _ in range(budget):
        gains = np.maximum(w - cover[:, None], 0).sum(axis=0)
        gains[chosen] = -1
        best = int(np.argmax(gains))
        chosen.append(best)
        cover = np.maximum(cover, w[:, best])
    return chosen


@pytest.mark.parametrize("seed", range(4))
def test_herding_matches_the_plain_greedy(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    sel = herding.run(x, 20, neighbors=6)
    assert sel.indices.tolist() == herding_oracle(x, 6, 20)


def test_auto_follows_its_rule_and_says_why() -> None:
    assert auto.choose(50) == auto.RULE[0][1]
    assert auto.choose(100_000) == "random" and auto.choose(1000) == "herding"
    x = clustered(400, 6, seed=5)
    small = run_method("auto", x, 20, seed=1, classes=10)
    assert small.params["chose"] == auto.choose(20, 10) and small.params["why"]
    inner = run_method(small.params["chose"], x, 20, seed=1)
    assert np.array_equal(small.indices, inner.indices)
    big = run_method("auto", x, 300, seed=1, classes=1)
    assert big.params["chose"] == "random"
    assert np.array_equal(big.indices, run_method("random", x, 300, seed=1).indices)


def test_cli_auto_says_what_it_chose(tmp_path, capsys) -> None:
    from zcore_fast.cli import main

    np.save(tmp_path / "x.npy", clustered(400, 6, seed=2))
    args = ["select", str(tmp_path / "x.npy"), "--budget", "300", "-o", str(tmp_path / "k.npy")]
    assert main([*args, "--method", "auto", "--classes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"]["chose"] == "random" and out["kept"] == 300
    assert main([*args, "--method", "typiclust", "--classes", "3"]) == 2


def test_faiss_is_not_imported_with_the_package() -> None:
    code = (
        "import sys, zcore_fast; from zcore_fast.methods import typiclust, herding; "
        "assert 'faiss' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
