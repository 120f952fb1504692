"""evaluate's budgets as row counts and its second probe (k-NN), CLI included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zcore_fast
from test_evaluate import blobs
from zcore_fast.cli import main
from zcore_fast.evaluation import evaluate
from zcore_fast.evaluation.knn_probe import TEMPERATURE, KNNProbe
from zcore_fast.evaluation.selection import Selector


def knn_oracle(xc: np.ndarray, yc: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity, the k most similar coreset rows vote with weight
    exp(sim / T); the class of the largest total wins (one row at a time)."""
    xn = xc / np.linalg.norm(xc, axis=1, keepdims=True)
    out = []
    for row in q:
        sim = xn @ (row / np.linalg.norm(row))
        top = np.argsort(-sim, kind="stable")[:k]
        votes: dict[int, float] = {}
        for j in top:
            votes[int(yc[j])] = votes.get(int(yc[j]), 0.0) + np.exp(sim[j] / TEMPERATURE)
        out.append(max(sorted(votes), key=lambda c: votes[c]))
    return np.array(out)


@pytest.mark.parametrize("seed", range(3))
def test_knn_probe_matches_the_oracle(seed: int) -> None:
    x, y = blobs(n=260, d=6, seed=seed)
    probe = KNNProbe().fit(x[:60], y[:60])
    assert probe.k_ in probe.validation_
    assert np.array_equal(probe.predict(x[60:]), knn_oracle(x[:60], y[:60], x[60:], probe.k_))
    # leave-one-out picked the best k (ties: smaller)
    best = max(probe.validation_.values())
    assert probe.k_ == min(k for k, a in probe.validation_.items() if a == best)


def test_budgets_as_counts_and_both_probes() -> None:
    x, y = blobs()
    res = evaluate(
        x,
        y,
        methods=["random", "typiclust"],
        prune_rates=(),
        budgets=(8, 40),
        probes=("linear", "knn"),
        seeds=2,
    )
    assert {r.n_selected for r in res.runs} == {8, 40}
    assert {r.probe for r in res.runs} == {"linear", "knn"}
    assert len(res.runs) == 2 * 2 * 2 * 2
    assert res.prune_rates == (1 - 8 / 480, 1 - 40 / 480)
    assert set(res.full_accuracies) == {"linear", "knn"}
    assert {(s.method, s.probe, s.n_selected) for s in res.summary()} == {
        (m, p, b) for m in ("random", "typiclust") for p in ("linear", "knn") for b in (8, 40)
    }
    with pytest.raises(ValueError, match="not below the 480 training rows"):
        evaluate(x, y, methods=["random"], prune_rates=(), budgets=(480,), seeds=1)
    with pytest.raises(ValueError, match="probes must be among"):
        evaluate(x, y, methods=["random"], probes=("svm",), seeds=1)


def test_cli_budgets_and_probe(tmp_path, capsys) -> None:
    x, y = blobs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["evaluate", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    args += ["--methods", "random,auto", "--budgets", "10,20", "--probe", "linear,knn"]
    args += ["--seeds", "1", "-o", str(tmp_path / "r"), "--json"]
    pytest.importorskip("matplotlib")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probes"] == ["linear", "knn"]
    assert sorted({s["n_selected"] for s in summary["summary"]}) == [10, 20]
    assert (tmp_path / "r" / "accuracy.png").stat().st_size > 0
    assert main([*args[:-1], "--budgets", "ten"]) == 2
    assert main([*args[:-1], "--probe", "svm"]) == 2


@pytest.mark.parametrize("method", ["herding", "probcover", "random"])
def test_greedy_methods_are_selected_once_and_cut(method: str) -> None:
    """evaluate selects nested methods once at the largest budget and takes
    prefixes; that is what select_with gives at each budget."""
    x, _ = blobs(n=300)
    stages: list[str] = []
    points = ((0.9, 30), (0.5, 150), (0.97, 9))
    got = list(Selector(x, threads=1).coresets(method, points, 2, {}, stages.append))
    assert len(stages) == 1
    for (_, count), (_, keep, _) in zip(points, got):
        assert np.array_equal(keep, zcore_fast.select_with(method, x, count, seed=2))
