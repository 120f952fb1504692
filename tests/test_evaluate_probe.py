"""The linear probe, its optimiser and the stratified splits, against
scikit-learn's LogisticRegression as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from zcore_fast.evaluation import LinearProbe
from zcore_fast.evaluation.lbfgs import minimize
from zcore_fast.evaluation.probe import REG_GRID
from zcore_fast.evaluation.splits import stratified_folds, stratified_holdout

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return [(a - mean) / std for a in (train, *others)]


def _gaussian_classes(n: int, d: int, k: int, seed: int, noise: float = 1.0):
    """k Gaussian classes whose means differ in a few directions: most
    dimensions are noise, so the probe has to regularise."""
    rng = np.random.default_rng(seed)
    means = np.zeros((k, d))
    means[:, :8] = rng.normal(size=(k, 8))
    y = rng.integers(0, k, size=n)
    x = means[y] + noise * rng.normal(size=(n, d))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    train, test = stratified_holdout(y, 0.3, seed=0)
    return x[train], y[train], x[test], y[test]


def test_probe_on_all_data_reaches_standard_logistic_regression(digits) -> None:
    """The issue's quality bar: on 100% of the data, the probe's accuracy is
    at least that of scikit-learn's LogisticRegression (defaults, on the same
    standardised features), to within one test example in a hundred."""
    x, y, xt, yt = digits
    ours = LinearProbe().fit(x, y).score(xt, yt)
    xs, xts = _standardise(x, xt)
    oracle = LogisticRegression(max_iter=5000).fit(xs, y).score(xts, yt)
    assert ours >= oracle - 0.01, (ours, oracle)
    assert ours > 0.95


def test_probe_matches_logistic_regression_on_noisy_high_dimensional_data() -> None:
    x, y = _gaussian_classes(4000, 200, 5, seed=0, noise=1.5)
    ours = LinearProbe().fit(x[:1000], y[:1000]).score(x[1000:], y[1000:])
    xs, xts = _standardise(x[:1000], x[1000:])
    oracle = LogisticRegression(max_iter=5000).fit(xs, y[:1000]).score(xts, y[1000:])
    assert ours >= oracle - 0.01, (ours, oracle)


@pytest.mark.parametrize("lam", [1e-1, 1e-3])
def test_fixed_regularisation_finds_the_same_optimum_as_sklearn(digits, lam: float) -> None:
    """With the strength fixed, the optimiser reaches scikit-learn's solution
    (C = 1 / (lambda n) on standardised features): same weights, same answers."""
    x, y, xt, _ = digits
    probe = LinearProbe(reg=lam, gtol=1e-7, max_iter=5000, dtype=np.float64).fit(x, y)
    xs, xts = _standardise(x, xt)
    oracle = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-10, max_iter=20000).fit(xs, y)
    # softmax weights are defined up to a shift shared by all classes
    ours_w = probe.coef_ - probe.coef_.mean(axis=1, keepdims=True)
    ref_w = oracle.coef_.T - oracle.coef_.T.mean(axis=1, keepdims=True)
    assert np.linalg.norm(ours_w - ref_w) / np.linalg.norm(ref_w) < 2e-3
    assert np.array_equal(probe.predict(xt), oracle.predict(xts))


def test_chosen_regularisation_is_near_the_best_in_hindsight() -> None:
    """Validation picks a strength whose test accuracy is close to the best
    any grid strength reaches on the test set (which the probe never sees)."""
    chosen, best = [], []
    for seed, n in enumerate([60, 120, 300, 800, 2500]):
        x, y = _gaussian_classes(n + 3000, 100, 4, seed=seed, noise=2.0)
        x, y, xt, yt = x[:n], y[:n], x[n:], y[n:]
        probe = LinearProbe(seed=seed).fit(x, y)
        assert probe.reg_ in REG_GRID and probe.reg_ in probe.validation_
        chosen.append(probe.score(xt, yt))
        best.append(max(LinearProbe(reg=lam).fit(x, y).score(xt, yt) for lam in REG_GRID))
    gaps = np.array(best) - np.array(chosen)
    assert gaps.mean() < 0.02 and gaps.max() < 0.08, gaps


def test_small_pools_get_stronger_regularisation_than_large_ones() -> None:
    x, y = _gaussian_classes(6000, 100, 4, seed=3, noise=2.0)
    small = LinearProbe().fit(x[:40], y[:40]).reg_
    large = LinearProbe().fit(x, y).reg_
    assert small > large


def test_probe_is_not_fooled_by_shuffled_labels() -> None:
    """A probe that learns from the labels drops to chance when they are
    shuffled (so high accuracies elsewhere are not an artefact)."""
    x, y = _gaussian_classes(3000, 50, 4, seed=4, noise=0.5)
    real = LinearProbe().fit(x[:2000], y[:2000]).score(x[2000:], y[2000:])
    shuffled = np.random.default_rng(0).permutation(y[:2000])
    chance = LinearProbe().fit(x[:2000], shuffled).score(x[2000:], y[2000:])
    assert real > 0.9 and chance < 0.4


def test_one_class_string_labels_and_tiny_inputs() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    probe = LinearProbe().fit(x, np.array(["cat"] * 5))
    assert list(probe.predict(x)) == ["cat"] * 5
    names = np.array(["a", "b", "a", "b", "a", "b"])
    x2 = np.where(names[:, None] == "a", 1.0, -1.0) * np.ones((6, 2))
    assert LinearProbe().fit(x2, names).score(x2, names) == 1.0
    constant = np.ones((4, 2))  # zero variance: standardised without dividing by 0
    assert np.isfinite(LinearProbe().fit(constant, [0, 1, 0, 1]).decision_function(constant)).all()
    with pytest.raises(ValueError, match="shape"):
        LinearProbe().fit(np.ones((3, 2)), [0, 1])


def test_lbfgs_minimises_rosenbrock_and_quadratics() -> None:
    def rosen(v: np.ndarray) -> tuple[float, np.ndarray]:
        x, y = v
        f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
        return f, g

    res = minimize(rosen, np.array([-1.2, 1.0]), max_iter=2000, gtol=1e-8)
    assert res.converged and np.allclose(res.x, [1.0, 1.0], atol=1e-5)
    a = np.diag(np.logspace(0, 3, 20))
    b = np.arange(20.0)
    res = minimize(lambda v: (0.5 * v @ a @ v - b @ v, a @ v - b), np.zeros(20), gtol=1e-6)
    assert res.converged and np.allclose(res.x, np.linalg.solve(a, b), atol=1e-6)


def test_stratified_holdout_keeps_class_shares_and_is_seeded() -> None:
    y = np.repeat(np.arange(4), [100, 50, 10, 1])
    train, test = stratified_holdout(y, 0.2, seed=0)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(y.size))
    assert np.bincount(y[test], minlength=4).tolist() == [20, 10, 2, 0]
    again = stratified_holdout(y, 0.2, seed=0)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(stratified_holdout(y, 0.2, seed=1)[1], test)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        stratified_holdout(y, 1.0, seed=0)


def test_stratified_folds_partition_rows_with_balanced_classes() -> None:
    y = np.repeat(np.arange(3), [30, 31, 7])
    folds = stratified_folds(y, 3, seed=0)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(y.size))
    for f in folds:
        counts = np.bincount(y[f], minlength=3)
        assert counts[0] == 10 and 10 <= counts[1] <= 11 and 2 <= counts[2] <= 3
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
