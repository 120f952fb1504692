"""Pictures: the accuracy plot and the score map are written, readable, and
show what they claim (lines, colour bar, ringed coreset); PCA is right."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
from zcore_fast.evaluation import plot_accuracy, plot_score_map, project
from zcore_fast.evaluation.projection import pca_2d
from zcore_fast.evaluation.results import EvalResults, Run

pytest.importorskip("matplotlib")
from matplotlib import image

RING = np.array([0xE4, 0x1A, 0x1C]) / 255  # the coreset's ring colour


def _read(path) -> np.ndarray:
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img[..., :3]


def _has_colour(img: np.ndarray, rgb: np.ndarray, tol: float = 0.04) -> int:
    return int(np.sum(np.all(np.abs(img - rgb) < tol, axis=-1)))


def fake_results(methods=("zcore", "random"), seeds=3) -> EvalResults:
    rates = (0.3, 0.5, 0.9, 0.99)
    runs = []
    rng = np.random.default_rng(0)
    for m in methods:
        for p in rates:
            for s in range(seeds):
                acc = 0.9 - 0.3 * p**4 + 0.01 * rng.normal()
                runs.append(Run(m, p, s, int(10_000 * (1 - p)), acc, 1e-2, 0.1, 0.2))
    return EvalResults(
        runs=runs,
        full_accuracy=0.91,
        full_reg=1e-3,
        n_train=10_000,
        n_test=2_000,
        n_classes=10,
        dims=64,
        methods=tuple(methods),
        prune_rates=rates,
        seeds=tuple(range(seeds)),
        held_out=True,
    )


def test_accuracy_plot_is_a_readable_png_with_one_line_per_method(tmp_path) -> None:
    path = tmp_path / "accuracy.png"
    plot_accuracy(fake_results(), path)
    img = _read(path)
    assert 600 < img.shape[1] < 2000 and 400 < img.shape[0] < 1500
    # each method's line is drawn in its own colour, and there is a band
    zcore_red, random_grey = np.array([0xD6, 0x27, 0x28]) / 255, np.array([0x7F] * 3) / 255
    assert _has_colour(img, zcore_red) > 200 and _has_colour(img, random_grey) > 200
    assert not list(tmp_path.glob(".*.tmp"))


def test_accuracy_plot_handles_unknown_methods_and_one_seed(tmp_path) -> None:
    path = tmp_path / "a.png"
    plot_accuracy(fake_results(methods=("mine",), seeds=1), path, title="one seed")
    assert _read(path).std() > 0.05  # not blank


def test_score_map_rings_the_coreset_and_subsamples(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    x[:1500, 0] += 6  # two clusters
    scores = rng.random(3000)
    path = tmp_path / "map.png"
    proj = plot_score_map(x, scores, path, coreset=np.arange(0, 3000, 10), max_points=1000)
    assert proj.rows.size == 1000 and proj.method == "pca" and proj.coords.shape == (1000, 2)
    assert np.all(np.diff(proj.rows) > 0)
    # about 10% of the drawn rows are coreset rows: the subsample keeps its share
    assert 60 < np.sum(proj.rows % 10 == 0) < 140
    img = _read(path)
    assert 600 < img.shape[1] < 2000
    ringed = _has_colour(img, RING, tol=0.12)
    plain = tmp_path / "plain.png"
    plot_score_map(x, scores, plain, max_points=1000, color_by="score")
    assert ringed > 300 and _has_colour(_read(plain), RING, tol=0.12) < ringed / 10


def test_score_map_reads_files_and_select_outputs(tmp_path) -> None:
    import zcore_fast

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    scores = zcore_fast.score(x, n_sample=2000, redund_nn=20)
    np.save(tmp_path / "s.npy", scores)
    keep = zcore_fast.select(scores, 0.1)
    zcore_fast.save_selection(tmp_path / "k.csv", keep, scores)
    zcore_fast.save_selection(tmp_path / "k.txt", keep, scores)
    for name in ("k.csv", "k.txt"):
        out = tmp_path / f"{name}.png"
        proj = plot_score_map(
            str(tmp_path / "x.npy"), tmp_path / "s.npy", out, coreset=tmp_path / name
        )
        assert proj.rows.size == 400 and out.stat().st_size > 10_000


def test_pca_matches_svd_and_is_sign_stable() -> None:
    rng = np.random.default_rng(2)
    for n, d in [(500, 10), (30, 50)]:  # tall (covariance route) and wide (SVD route)
        x = rng.normal(size=(n, d)) @ np.diag(np.linspace(3, 0.1, d))
        coords, explained = pca_2d(x)
        xc = x - x.mean(0)
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        ref = xc @ vt[:2].T
        assert np.allclose(np.abs(coords), np.abs(ref), atol=1e-8)
        assert np.allclose(explained, s[:2] ** 2 / np.sum(s**2))
        again, _ = pca_2d(x[::-1])
        assert np.allclose(again[::-1], coords, atol=1e-8)  # same signs for the same rows


def test_umap_is_used_when_installed(monkeypatch) -> None:
    calls = []

    class FakeUMAP:
        def __init__(self, n_components: int, random_state: int) -> None:
            calls.append((n_components, random_state))

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            return x[:, :2] * 2

    fake = types.ModuleType("umap")
    fake.UMAP = FakeUMAP  # type: ignore[attr-defined]
    fake.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    monkeypatch.setitem(sys.modules, "umap", fake)
    x = np.random.default_rng(3).normal(size=(50, 4))
    proj = project(x, seed=7)
    assert proj.method == "umap" and calls == [(2, 7)]
    assert np.allclose(proj.coords, x[:, :2] * 2, atol=1e-6)
    assert project(x, method="pca").method == "pca"


def test_missing_matplotlib_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "zcore-fast\[plot\]"'):
        plot_accuracy(fake_results(), tmp_path / "a.png")
    with pytest.raises(ImportError, match="zcore-fast"):
        plot_score_map(np.zeros((10, 2)), np.zeros(10), tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


def test_missing_umap_is_refused_when_asked_for(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install umap-learn"):
        project(np.zeros((10, 3)), method="umap")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": np.zeros(9)}, r"scores have shape \(9,\) but the embeddings have 10 rows"),
        ({"scores": np.full(10, np.nan)}, "NaN"),
        ({"coreset": np.array([0, 10])}, r"must be in \[0, 10\)"),
        ({"coreset": np.array([0.5])}, "row indices"),
        ({"projection": "tsne"}, "projection must be one of"),
        ({"max_points": 2}, "max_points"),
        ({"color_by": "hue"}, "color_by"),
    ],
)
def test_score_map_bad_input(tmp_path, kwargs, match) -> None:
    args = {"scores": np.zeros(10), **kwargs}
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match=match):
        plot_score_map(x, args.pop("scores"), tmp_path / "m.png", **args)
    assert not (tmp_path / "m.png").exists()
