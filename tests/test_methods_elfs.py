"""ELFS: training dynamics against a hand-written training run, double-end
pruning against its definition, and the label-free beta search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import clustered
from zcore_fast.methods import elfs
from zcore_fast.methods.proxy import Recorder, epoch_orders, init_params

torch = pytest.importorskip("torch")  # in the test extra: CI runs these for real


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_recorder_by_hand() -> None:
    rec = Recorder(3, epochs=2, el2n_epochs=1, device="cpu")
    y = torch.tensor([0, 1, 2])
    first = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]
    second = [[0.0, 1.0, 0.0], [0.0, 4.0, 0.0], [1.0, 1.0, 1.0]]
    rec.record(0, torch.tensor([0, 1, 2]), torch.tensor(first), y)
    rec.record(1, torch.tensor([2, 0, 1]), torch.tensor(second)[[2, 0, 1]], y[[2, 0, 1]])
    got = rec.result()
    aum, el2n = [0.0] * 3, [0.0] * 3
    for epoch, logits in enumerate([first, second]):
        for row in range(3):
            p = softmax(np.array(logits[row]))
            mine = p[row]
            aum[row] += mine - max(q for j, q in enumerate(p) if j != row)
            if epoch == 0:
                el2n[row] += math.sqrt(sum((q - (j == row)) ** 2 for j, q in enumerate(p)))
    np.testing.assert_allclose(got.aum, aum, rtol=1e-6)
    np.testing.assert_allclose(got.el2n, el2n, rtol=1e-6)
    # Row 0: right, then wrong (1 event). Row 1: wrong, then right (0).
    # Row 2: a three-way tie goes to class 0, so never right: counts `epochs`.
    assert got.forgetting.tolist() == [1, 0, 2]


def oracle_dynamics(x, y, classes, epochs, batch, lr, el2n_epochs, seed):
    """The proxy's training written out in NumPy (float64): standardised
    inputs, linear head, mean cross-entropy, Adam with a per-step cosine
    learning rate; dynamics from each step's pre-update logits."""
    n, d = x.shape
    x = x.astype(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    params = [p.astype(np.float64) for p in init_params(d, classes, 0, seed)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    onehot = np.eye(classes)[y]
    total = epochs * math.ceil(n / batch)
    aum, el2n, forgot = np.zeros(n), np.zeros(n), np.zeros(n)
    last, ever = np.zeros(n, bool), np.zeros(n, bool)
    t = 0
    for epoch, order in enumerate(epoch_orders(n, epochs, seed)):
        for lo in range(0, n, batch):
            rows = order[lo : lo + batch]
            probs = np.array([softmax(z[i] @ params[0] + params[1]) for i in rows])
            for p, i in zip(probs, rows):
                aum[i] += p[y[i]] - np.delete(p, y[i]).max()
                right = int(np.argmax(p)) == y[i]
                forgot[i] += last[i] and not right
                last[i], ever[i] = right, ever[i] or right
                if epoch < el2n_epochs:
                    el2n[i] += np.linalg.norm(p - onehot[i])
            g = (probs - onehot[rows]) / len(rows)
            grads = [z[rows].T @ g, g.sum(axis=0)]
            rate = lr / 1000 + (lr - lr / 1000) * (1 + math.cos(math.pi * t / total)) / 2
            t += 1
            for k, grad in enumerate(grads):
                m1[k] = 0.9 * m1[k] + 0.1 * grad
                m2[k] = 0.999 * m2[k] + 0.001 * grad**2
                denom = np.sqrt(m2[k]) / math.sqrt(1 - 0.999**t) + 1e-8
                params[k] = params[k] - rate / (1 - 0.9**t) * m1[k] / denom
    forgot[~ever] = epochs
    return aum, forgot, el2n


def test_dynamics_match_a_hand_written_training_run() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    x = (np.eye(3)[y] * 1.5 + rng.normal(size=(40, 3))).astype(np.float32)
    got = elfs.training_dynamics(
        x, y, epochs=6, batch_size=16, lr=0.05, el2n_epochs=2, seed=4, device="cpu"
    )
    aum, forgot, el2n = oracle_dynamics(x, y, 3, 6, 16, 0.05, 2, seed=4)
    np.testing.assert_allclose(got.aum, aum, atol=1e-4)
    np.testing.assert_allclose(got.el2n, el2n, atol=1e-4)
    assert np.array_equal(got.forgetting, forgot)
    assert forgot.max() >= 1 and aum.min() < 0 < aum.max()  # the run is not degenerate


def oracle_double_end(order: list[int], keep: int, beta: float) -> list[int]:
    start = int(beta * len(order))
    if start + keep > len(order):
        start = len(order) - keep
    return order[start : start + keep]


@pytest.mark.parametrize(
    ("beta", "budget"), [(0.0, 0.3), (0.4, 0.1), (0.3, 0.7), (0.5, 0.7), (0.9, 1), (0.0, 1.0)]
)
def test_double_end_pruning(beta, budget) -> None:
    order = np.random.default_rng(1).permutation(10)
    keep = round(budget * 10) if isinstance(budget, float) else budget
    got = elfs.double_end(order, budget, beta)
    assert got.tolist() == oracle_double_end(order.tolist(), keep, beta)
    assert got.size == keep  # never empty, never short (beta + budget = 1 included)


def test_hard_first_per_score() -> None:
    s = np.array([0.5, -1.0, 2.0, -1.0])
    assert elfs.hard_first(s, "aum").tolist() == [1, 3, 0, 2]  # low margin is hard
    assert elfs.hard_first(s, "el2n").tolist() == [2, 0, 1, 3]  # high error is hard


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return clustered(240, 6, seed=3, clusters=4)


def test_selection_is_the_band_after_the_hardest_beta(x) -> None:
    sel = elfs.run(x, 0.25, beta=0.3, epochs=4, clusters=4)
    order = elfs.hard_first(sel.scores, "aum")
    assert sel.indices.tolist() == order[72 : 72 + 60].tolist()
    assert sel.params["beta"] == 0.3 and sel.params["beta_search"] is None
    assert elfs.select(x, 0.7, beta=0.3, epochs=4, clusters=4).size == 168  # beta + budget = 1


def test_beta_search_picks_the_best_held_out_accuracy(x) -> None:
    sel = elfs.run(x, 0.2, epochs=4, clusters=4, beta_grid=(0.0, 0.2, 0.4))
    scores = sel.params["beta_search"]
    assert set(scores) == {"0", "0.2", "0.4"}
    best = max(scores.values())
    assert sel.params["beta"] == min(float(b) for b, acc in scores.items() if acc == best)
    assert np.array_equal(
        sel.indices, elfs.select(x, 0.2, beta=sel.params["beta"], epochs=4, clusters=4)
    )


def test_labels_scores_and_options(x) -> None:
    labels = (x[:, 0] > 0).astype(int)
    sel = elfs.run(x, 0.1, labels=labels, beta=0.0, epochs=3, score="forgetting", hidden=8)
    assert sel.params["classes_from"] == "labels" and sel.score_name == "forgetting"
    assert np.all(np.diff(sel.scores[sel.indices]) <= 0)  # hardest (most forgotten) first
    with pytest.raises(ValueError, match="unknown ELFS score"):
        elfs.select(x, 0.1, score="loss", beta=0.0)
    with pytest.raises(ValueError, match="beta must be a fraction"):
        elfs.select(x, 0.1, beta=1.0)
    with pytest.raises(ValueError, match="beta_grid is empty"):
        elfs.select(x, 0.1, beta_grid=())
    with pytest.raises(ValueError, match="unknown device"):
        elfs.select(x, 0.1, beta=0.0, device="tpu9")
