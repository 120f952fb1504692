"""One interface over every selection method: `select_with` and `METHODS`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from reference import clustered
from zcore_fast.methods import METHODS, method_options, run_method, select_with

# Small and quick settings per method, so every test stays well under a second.
QUICK: dict[str, dict] = {
    "zcore": {"n_sample": 2000, "redund_nn": 50},
    "moderate": {},
    "elfs": {"epochs": 3, "beta": 0.2},
    "ccs": {"n_sample": 2000, "redund_nn": 50},
    "random": {},
    "typiclust": {},
    "probcover": {},
    "herding": {},
    "auto": {},
}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return clustered(300, 8, seed=0)


def test_names_and_top_level_exports() -> None:
    assert METHODS == (
        "zcore",
        "moderate",
        "elfs",
        "ccs",
        "random",
        "typiclust",
        "probcover",
        "herding",
        "auto",
    )
    assert zcore_fast.METHODS is METHODS and zcore_fast.select_with is select_with


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("budget", "kept"), [(0.1, 30), (1, 1), (1.0, 300), (77, 77)])
def test_every_method_keeps_the_budget(x, method, budget, kept) -> None:
    idx = select_with(method, x, budget, **QUICK[method])
    assert idx.dtype == np.int64 and idx.shape == (kept,)
    assert np.unique(idx).size == kept and idx.min() >= 0 and idx.max() < 300


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_indices(x, method) -> None:
    a = select_with(method, x, 0.2, seed=3, **QUICK[method])
    b = select_with(method, x, 0.2, seed=3, **QUICK[method])
    assert np.array_equal(a, b)


@pytest.mark.parametrize("method", ["zcore", "elfs", "random"])
def test_seed_changes_the_random_methods(x, method) -> None:
    a = select_with(method, x, 0.2, seed=1, **QUICK[method])
    b = select_with(method, x, 0.2, seed=2, **QUICK[method])
    assert not np.array_equal(a, b)


def test_zcore_matches_score_then_select(x) -> None:
    expected = zcore_fast.select(zcore_fast.score(x, seed=5, **QUICK["zcore"]), 0.1)
    assert np.array_equal(select_with("zcore", x, 0.1, seed=5, **QUICK["zcore"]), expected)


def test_random_is_uniform_and_nested(x) -> None:
    small, large = select_with("random", x, 10, seed=4), select_with("random", x, 100, seed=4)
    assert np.array_equal(small, large[:10])  # one permutation: nested budgets
    counts = np.bincount(
        np.concatenate([select_with("random", x, 30, seed=s) for s in range(300)]), minlength=300
    )
    assert counts.min() > 10 and counts.max() < 55  # expected 30 each (binomial sd 5.2)


def test_selection_reports_scores_and_parameters(x) -> None:
    sel = run_method("moderate", x, 0.1, clusters=4)
    assert sel.method == "moderate" and sel.score_name == "moderate_distance"
    assert sel.scores.shape == (300,) and sel.params["clusters"] == 4
    assert run_method("random", x, 0.1).scores is None


def test_unknown_method_and_options_list_the_valid_ones(x) -> None:
    with pytest.raises(ValueError, match="choose one of zcore, moderate, elfs, ccs, random"):
        select_with("kcenter", x, 0.1)
    with pytest.raises(
        ValueError, match=r"unknown option.*beta; valid options: clusters, max_iter"
    ):
        select_with("moderate", x, 0.1, beta=0.2)
    with pytest.raises(ValueError, match="valid options: none"):
        select_with("random", x, 0.1, clusters=3)
    # CCS takes the options of the score it stratifies, and only those.
    assert "n_sample" in method_options("ccs", "zcore")
    assert "epochs" in method_options("ccs", "aum") and "n_sample" not in method_options(
        "ccs", "aum"
    )
    with pytest.raises(ValueError, match=r"unknown option.*n_sample"):
        select_with("ccs", x, 0.1, score="moderate", n_sample=10)


@pytest.mark.parametrize("method", ["zcore", "random", "typiclust", "probcover", "herding", "auto"])
def test_label_free_methods_refuse_labels(x, method) -> None:
    with pytest.raises(ValueError, match="does not use labels"):
        select_with(method, x, 0.1, labels=np.zeros(300, dtype=int), **QUICK[method])


@pytest.mark.parametrize("method", ["moderate", "elfs"])
def test_labels_length_must_match(x, method) -> None:
    with pytest.raises(ValueError, match="labels have 299 entries but the embeddings have 300"):
        select_with(method, x, 0.1, labels=np.zeros(299, dtype=int), **QUICK[method])


@pytest.mark.parametrize("method", ["moderate", "elfs", "ccs"])
def test_more_clusters_than_rows_is_a_clear_error(method) -> None:
    opts = {"score": "moderate"} if method == "ccs" else QUICK[method]
    with pytest.raises(ValueError, match="clusters=11 is more than the 10 rows"):
        select_with(method, clustered(10, 4, seed=0), 0.5, clusters=11, **opts)


@pytest.mark.parametrize("method", METHODS)
def test_bad_budgets(x, method) -> None:
    for budget in (0, 301, 1.5):
        with pytest.raises(ValueError, match="budget"):
            select_with(method, x, budget, **QUICK[method])


@pytest.mark.parametrize("method", ["moderate", "elfs", "ccs", "typiclust", "probcover", "herding"])
def test_bad_input_gets_the_engines_messages(tmp_path, method) -> None:
    opts = {"score": "moderate"} if method == "ccs" else QUICK[method]
    bad = clustered(20, 3, seed=0)
    bad[[4, 11], 1] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"NaN or Inf in 2 row\(s\): 4, 11"):
        select_with(method, bad, 0.5, **opts)
    with pytest.raises(FileNotFoundError, match="no such file"):
        select_with(method, tmp_path / "missing.npy", 0.5, **opts)
    (tmp_path / "t.npy").write_text("not numpy")
    with pytest.raises(ValueError, match=r"not an \.npy file"):
        select_with(method, tmp_path / "t.npy", 0.5, **opts)
    with pytest.raises(ValueError, match="row counts differ"):
        select_with(method, [bad[:10], bad[:9]], 0.5, **opts)
    with pytest.raises(ValueError, match="2-D"):
        select_with(method, np.ones(5, dtype=np.float32), 0.5, **opts)


def test_files_float16_and_concatenation_agree(x, tmp_path) -> None:
    half = x.astype(np.float16)
    np.save(tmp_path / "a.npy", half[:, :5])
    np.save(tmp_path / "b.npy", half[:, 5:])
    expected = select_with("moderate", half.astype(np.float32), 0.2)
    got = select_with("moderate", [tmp_path / "a.npy", str(tmp_path / "b.npy")], 0.2)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("method", ["moderate", "elfs"])
def test_progress_rises_to_its_total(x, method) -> None:
    calls: list[tuple[int, int]] = []
    select_with(method, x, 0.1, progress=lambda d, t: calls.append((d, t)), **QUICK[method])
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and done == sorted(done) and calls[-1] == (1000, 1000)


def test_raising_from_progress_stops_the_method(x) -> None:
    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select_with("elfs", x, 0.1, progress=stop, **QUICK["elfs"])


def test_import_does_not_import_torch() -> None:
    code = "import sys, zcore_fast, zcore_fast.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_select_with_zcore_takes_the_column_cache_options(tmp_path: Path) -> None:
    """select_with("zcore" | "ccs") places the column cache where asked (as
    `score` does), with the same selection as without it; the other
    methods refuse the options."""
    x = np.random.default_rng(3).normal(size=(600, 8)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    params = {"n_sample": 1_500, "redund_nn": 20, "seed": 1}
    for method in ("zcore", "ccs"):
        want = zcore_fast.select_with(method, path, 50, cache="never", **params)
        where = tmp_path / f"cache-{method}"
        got = zcore_fast.select_with(method, path, 50, cache="always", cache_dir=where, **params)
        np.testing.assert_array_equal(got, want)
        assert list(where.glob("columns-*.npy")), "no cache entry written"
    # A shard folder's copy is placed there too, and used as it is.
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, piece in enumerate(np.array_split(x, 3)):
        np.save(folder / f"part_{i}.npy", piece)
    where = tmp_path / "cache-shards"
    got = zcore_fast.select_with("zcore", folder, 50, cache="always", cache_dir=where, **params)
    np.testing.assert_array_equal(got, zcore_fast.select_with("zcore", x, 50, **params))
    assert len(list(where.glob("columns-*.npy"))) == 1
    with pytest.raises(ValueError, match="unknown option"):
        zcore_fast.select_with("moderate", path, 50, cache="always")
