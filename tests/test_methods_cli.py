"""`zcore-fast select --method ...` for every method."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference import clustered
from zcore_fast.cli import main
from zcore_fast.methods import run_method

FLAGS = {
    "zcore": ["--n-sample", "2000", "--redund-nn", "50"],
    "moderate": ["--clusters", "4"],
    "elfs": ["--epochs", "3", "--beta", "0.2", "--clusters", "4"],
    "ccs": ["--n-sample", "2000", "--redund-nn", "50", "--mis-ratio", "0.1", "--strata", "10"],
    "random": [],
}
OPTIONS = {
    "zcore": {"n_sample": 2000, "redund_nn": 50},
    "moderate": {"clusters": 4},
    "elfs": {"epochs": 3, "beta": 0.2, "clusters": 4},
    "ccs": {"n_sample": 2000, "redund_nn": 50, "mis_ratio": 0.1, "strata": 10},
    "random": {},
}


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "emb.npy"
    np.save(path, clustered(400, 6, seed=0))
    return path


@pytest.mark.parametrize("method", list(FLAGS))
def test_each_method_writes_what_the_api_selects(emb, tmp_path, method, capsys) -> None:
    out = tmp_path / "keep.csv"
    argv = ["select", str(emb), "--method", method, "--budget", "0.1", "-o", str(out), "--json"]
    assert main([*argv, "--seed", "2", *FLAGS[method]]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == method and summary["kept"] == 40 and summary["n"] == 400
    assert summary["parameters"]["seed"] == 2
    for name, value in OPTIONS[method].items():
        assert summary["parameters"][name] == value
    expected = run_method(method, str(emb), 0.1, seed=2, **OPTIONS[method])
    lines = out.read_text().splitlines()
    assert lines[0] == "index,score,rank" and len(lines) == 41
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == expected.indices.tolist()
    if expected.scores is None:
        assert all(r[1] == "" for r in rows)
    else:
        got = [float(r[1]) for r in rows]
        np.testing.assert_allclose(got, expected.scores[expected.indices], rtol=1e-6)


def test_moderate_with_labels_and_scores_out(emb, tmp_path, capsys) -> None:
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(400) % 3)
    out, scores = tmp_path / "keep.npy", tmp_path / "scores.npy"
    argv = ["select", str(emb), "--method", "moderate", "--labels", str(labels)]
    assert (
        main([*argv, "--budget", "50", "-o", str(out), "--scores-out", str(scores), "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"]["classes_from"] == "labels"
    assert summary["score"] == "moderate_distance" and summary["scores_out"] == str(scores)
    expected = run_method("moderate", str(emb), 50, labels=np.arange(400) % 3)
    assert np.array_equal(np.load(out), expected.indices)
    np.testing.assert_allclose(np.load(scores), expected.scores)


def test_ccs_over_the_moderate_distance(emb, tmp_path, capsys) -> None:
    out = tmp_path / "keep.txt"
    argv = ["select", str(emb), "--method", "ccs", "--ccs-score", "moderate", "--clusters", "3"]
    assert main([*argv, "--budget", "0.2", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["score"] == "moderate_distance" and summary["parameters"]["clusters"] == 3
    assert len(out.read_text().split()) == 80


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("moderate", ["--beta", "0.3"], "--beta does not apply to --method moderate"),
        ("zcore", ["--clusters", "3"], "--clusters does not apply to --method zcore"),
        ("random", ["--n-sample", "5"], "--n-sample is a ZCore flag"),
        ("ccs", ["--ccs-score", "aum", "--n-sample", "5"], "--n-sample is a ZCore flag"),
        ("elfs", ["--ccs-score", "aum"], "--ccs-score does not apply to --method elfs"),
        ("random", ["--labels", "x.npy"], "--labels does not apply to --method random"),
        ("random", ["--scores-out", "s.npy"], "random has no scores"),
        ("moderate", ["--backend", "ray"], "--backend and the Ray flags apply to --method zcore"),
        ("typiclust", ["--workers", "2"], "--method typiclust runs in this process"),
        ("herding", ["--backend", "cuda"], "--backend and the Ray flags apply to --method zcore"),
    ],
)
def test_flags_of_other_methods_are_usage_errors(emb, tmp_path, method, extra, message, capsys):
    out = tmp_path / "keep.npy"
    argv = ["select", str(emb), "--method", method, "--budget", "0.1", "-o", str(out)]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_runtime_errors_are_one_line(emb, tmp_path, capsys) -> None:
    argv = ["select", str(emb), "--method", "moderate", "--clusters", "401", "--budget", "0.1"]
    assert main([*argv, "-o", str(tmp_path / "keep.npy")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clusters=401 is more than the 400 rows" in err[0]
