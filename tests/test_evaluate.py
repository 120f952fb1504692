"""`zcore_fast.evaluate`: the grid of (method, prune rate, seed) runs, its
numbers, its guarantees (labels never reach selection) and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import zcore_fast
from zcore_fast.evaluation import EvalResults, evaluate
from zcore_fast.evaluation.results import results_from_dict
from zcore_fast.evaluation.selection import Selector
from zcore_fast.select import keep_count

FAST = {"n_sample": 4000, "redund_nn": 50}
RATES = (0.5, 0.9)


def blobs(n: int = 600, d: int = 12, k: int = 4, seed: int = 0, spread: float = 1.6):
    """k Gaussian classes that overlap enough for accuracy to depend on the
    training rows (not 100% from any 10 rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 1.2
    y = rng.integers(0, k, size=n)
    return (centres[y] + spread * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def results(data) -> EvalResults:
    x, y = data
    return evaluate(x, y, prune_rates=RATES, seeds=2, method_options={"zcore": FAST})


def test_grid_of_runs_and_summaries(results: EvalResults) -> None:
    assert results.methods == ("zcore", "random") and results.seeds == (0, 1)
    # held out: a stratified 20% of 600 rows
    assert results.held_out and results.n_test == 120 and results.n_train == 480
    assert len(results.runs) == 2 * 2 * 2
    for run in results.runs:
        assert run.n_selected == 480 - math.floor(run.prune_rate * 480)
        assert 0.0 <= run.accuracy <= 1.0 and run.select_seconds >= 0 and run.probe_seconds > 0
        # accuracies are fractions of the 120 test rows
        assert abs(run.accuracy * 120 - round(run.accuracy * 120)) < 1e-9
    summary = results.summary()
    assert [(s.method, s.prune_rate) for s in summary] == [
        ("zcore", 0.5),
        ("zcore", 0.9),
        ("random", 0.5),
        ("random", 0.9),
    ]
    for s in summary:
        accs = [
            r.accuracy for r in results.runs if (r.method, r.prune_rate) == (s.method, s.prune_rate)
        ]
        assert s.seeds == 2 and s.accuracy_mean == pytest.approx(np.mean(accs))
        assert s.accuracy_std == pytest.approx(np.std(accs, ddof=1))
        assert s.accuracy_min == min(accs) and s.accuracy_max == max(accs)
    assert 0.6 < results.full_accuracy <= 1.0


def test_more_data_helps_and_full_data_is_the_ceiling(results: EvalResults) -> None:
    by = {(s.method, s.prune_rate): s.accuracy_mean for s in results.summary()}
    for method in ("zcore", "random"):
        assert by[(method, 0.5)] >= by[(method, 0.9)] - 0.02
        assert by[(method, 0.9)] <= results.full_accuracy + 0.03


def test_deterministic_for_the_same_seeds(data, results: EvalResults) -> None:
    x, y = data
    again = evaluate(x, y, prune_rates=RATES, seeds=[0, 1], method_options={"zcore": FAST})
    assert [r.accuracy for r in again.runs] == [r.accuracy for r in results.runs]
    assert again.full_accuracy == results.full_accuracy


def test_harness_tells_a_bad_selection_from_a_good_one(data, monkeypatch) -> None:
    """Can the harness fail a method? One that keeps only two classes' rows
    must score far below random at the same budget."""
    x, y = data
    from zcore_fast import methods

    real = methods.select_with
    _, train_rows = _held_out_split(y)

    def biased(method, emb, budget, **kw):
        if method != "moderate":
            return real(method, emb, budget, **kw)
        # (cheats with the labels of the training rows, to be bad on purpose)
        return np.flatnonzero(y[train_rows] < 2)[:budget]

    monkeypatch.setattr(methods, "select_with", biased)
    res = evaluate(x, y, methods=["moderate", "random"], prune_rates=(0.7,), seeds=2)
    acc = {s.method: s.accuracy_mean for s in res.summary()}
    assert acc["moderate"] < 0.6 < acc["random"] - 0.1


def _held_out_split(y):
    from zcore_fast.evaluation.splits import stratified_holdout

    return stratified_holdout(y, 0.2, 0)[::-1]  # (test rows, train rows)


def test_labels_never_reach_selection(data, monkeypatch) -> None:
    x, y = data
    from zcore_fast import methods

    real, seen = methods.select_with, []

    def spy(method, emb, budget, **kw):
        seen.append((method, np.asarray(emb).shape, kw.get("labels", "absent")))
        return real(method, emb, budget, **kw)

    monkeypatch.setattr(methods, "select_with", spy)
    evaluate(x, y, methods=["moderate", "random"], prune_rates=RATES, seeds=1)
    assert len(seen) == 3  # moderate per prune rate; random once, cut to each
    # selection sees only the 480 training rows, and never the labels
    assert all(shape == (480, 12) and labels is None for _, shape, labels in seen)


def test_zcore_prefix_equals_select_with(data) -> None:
    """evaluate scores ZCore once per seed and takes prefixes; that is the
    coreset select_with("zcore") gives at each budget."""
    x, _ = data
    selector = Selector(x, threads=2)
    points = tuple((r, keep_count(1.0 - r, x.shape[0])) for r in (0.3, 0.9))
    for _rate, keep, _ in selector.coresets("zcore", points, 5, FAST, lambda _: None):
        k = keep.size
        assert np.array_equal(keep, zcore_fast.select_with("zcore", x, k, seed=5, **FAST))


def test_ccs_reuses_zcore_scores_with_the_same_coresets(data) -> None:
    x, _ = data
    selector, stages = Selector(x, threads=2), []
    half = ((0.5, keep_count(0.5, x.shape[0])),)
    ccs = list(selector.coresets("ccs", half, 3, FAST, stages.append))
    list(selector.coresets("zcore", half, 3, FAST, stages.append))
    assert sum("scoring" in s for s in stages) == 1  # one scoring run for both
    direct = zcore_fast.select_with("ccs", x, ccs[0][1].size, seed=3, **FAST)
    assert np.array_equal(ccs[0][1], direct)


def test_given_test_set_string_labels_and_progress(data) -> None:
    x, y = data
    names = np.array(["ant", "bee", "cat", "dog"])[y]
    calls = []
    res = evaluate(
        x[200:],
        names[200:],
        test_embeddings=x[:200],
        test_labels=names[:200],
        methods=["random"],
        prune_rates=(0.5,),
        seeds=1,
        progress=lambda done, total, stage: calls.append((done, total, stage)),
    )
    assert not res.held_out and res.n_test == 200 and res.n_train == 400 and res.n_classes == 4
    assert calls[0] == (0, 2, "probe on all training rows") and calls[-1] == (2, 2, "done")
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)


def test_files_load_and_results_round_trip(data, results: EvalResults, tmp_path) -> None:
    x, y = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    res = evaluate(
        str(tmp_path / "x.npy"), tmp_path / "y.npy", methods=["random"], prune_rates=(0.9,), seeds=1
    )
    assert res.n_train == 480
    results.to_csv(tmp_path / "r.csv")
    results.runs_to_csv(tmp_path / "runs.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == (
        "method,prune_rate,n_selected,seeds,accuracy_mean,accuracy_std,accuracy_min,accuracy_max,"
        "probe"
    )
    assert lines[1].startswith("full,0,480,1,") and len(lines) == 1 + 1 + 4
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 1 + 8
    data_dict = json.loads(json.dumps(results.to_dict()))
    back = results_from_dict(data_dict)
    assert back.summary() == results.summary() and back.full_accuracy == results.full_accuracy
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": np.zeros(599, dtype=int)}, ValueError, "599 entries but embeddings have 600"),
        ({"labels": np.full(600, 3)}, ValueError, "single class"),
        ({"labels": np.full(600, 0.5)}, ValueError, "whole numbers"),
        ({"prune_rates": (0.5, 1.0)}, ValueError, r"prune rate 1.0 is outside \(0, 1\)"),
        ({"prune_rates": (0.0,)}, ValueError, r"outside \(0, 1\)"),
        ({"prune_rates": (-0.2,)}, ValueError, r"outside \(0, 1\)"),
        ({"prune_rates": (float("nan"),)}, TypeError, "numbers"),
        ({"prune_rates": ()}, ValueError, "no prune rates"),
        ({"methods": ["zcore", "kcenter"]}, ValueError, "unknown method 'kcenter'"),
        ({"seeds": 0}, ValueError, "at least 1"),
        ({"seeds": [-1]}, ValueError, "non-negative"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"test_embeddings": np.zeros((5, 12))}, ValueError, "together"),
        ({"method_options": {"elfs": {}}}, ValueError, "not among the methods"),
        ({"method_options": {"zcore": {"seed": 3}}}, ValueError, "set by evaluate"),
        ({"method_options": {"zcore": {"n_samples": 3}}}, ValueError, "'n_samples'.*n_sample"),
    ],
)
def test_bad_input_is_refused_clearly(data, kwargs, error, match) -> None:
    x, y = data
    args = {"labels": y, "prune_rates": RATES, "seeds": 1, **kwargs}
    with pytest.raises(error, match=match):
        evaluate(x, args.pop("labels"), **args)


def test_bad_embeddings_and_test_sets(data, tmp_path) -> None:
    x, y = data
    with pytest.raises(FileNotFoundError, match="no such file"):
        evaluate(str(tmp_path / "missing.npy"), y, seeds=1)
    with pytest.raises(FileNotFoundError, match="labels file"):
        evaluate(x, str(tmp_path / "missing_labels.npy"), seeds=1)
    bad = x.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 rows contain NaN or Inf \(rows 3, 7\)"):
        evaluate(bad, y, seeds=1)
    with pytest.raises(ValueError, match="11 dimensions but embeddings have 12"):
        evaluate(x, y, test_embeddings=x[:10, :11], test_labels=y[:10], seeds=1)
    with pytest.raises(ValueError, match="labels have 9 entries but test_embeddings have 10"):
        evaluate(x, y, test_embeddings=x[:10], test_labels=y[:9], seeds=1)
