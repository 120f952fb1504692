"""The `zcore-fast` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from reference import clustered
from zcore_fast.cli import main

FAST = ["--n-sample", "3000", "--redund-nn", "50"]


@pytest.fixture()
def emb(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, clustered(500, 8, seed=0))
    return path


@pytest.mark.parametrize("suffix", [".npy", ".txt", ".csv"])
def test_select_writes_each_format(emb, tmp_path, suffix, capsys) -> None:
    out = tmp_path / f"coreset{suffix}"
    assert main(["select", str(emb), "--budget", "0.1", "-o", str(out), *FAST]) == 0
    if suffix == ".npy":
        idx = np.load(out)
        assert idx.dtype == np.int64 and idx.size == 50
    elif suffix == ".txt":
        assert len(out.read_text().split()) == 50
    else:
        lines = out.read_text().splitlines()
        assert lines[0] == "index,score,rank" and len(lines) == 51
        assert lines[1].endswith(",1")
    assert "kept 50 of 500" in capsys.readouterr().out


def test_select_matches_api_and_json_summary(emb, tmp_path, capsys) -> None:
    import zcore_fast

    out, scores_out = tmp_path / "c.npy", tmp_path / "s.npy"
    argv = [
        "select",
        str(emb),
        "--prune-rate",
        "0.9",
        "-o",
        str(out),
        "--scores-out",
        str(scores_out),
        "--json",
        "--seed",
        "3",
        *FAST,
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 500 and summary["d"] == 8 and summary["kept"] == 50
    assert summary["parameters"]["seed"] == 3 and summary["seconds"] >= 0
    scores = zcore_fast.score(str(emb), n_sample=3000, redund_nn=50, seed=3)
    assert np.array_equal(np.load(scores_out), scores)
    assert np.array_equal(np.load(out), zcore_fast.select(scores, 0.1))


def test_score_command_and_concatenation(emb, tmp_path) -> None:
    out = tmp_path / "scores.npy"
    assert main(["score", str(emb), str(emb), "-o", str(out), "--quiet", *FAST]) == 0
    assert np.load(out).shape == (500,)


def test_auto_sample_count_and_convergence_in_json(emb, tmp_path, capsys) -> None:
    out = tmp_path / "s.npy"
    argv = ["score", str(emb), "-o", str(out), "--n-sample", "auto", "--redund-nn", "50"]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"]["n_sample"] == 1_000_000
    assert 0.0 < summary["convergence"]["spearman_halves"] <= 1.0
    assert main(["score", str(emb), "-o", str(out), "--n-sample", "lots"]) == 2
    assert "auto" in capsys.readouterr().err


def test_example_runs(tmp_path) -> None:
    out = tmp_path / "c.npy"
    assert main(["select", "--example", "--budget", "100", "-o", str(out), "--quiet", *FAST]) == 0
    assert np.load(out).size == 100


@pytest.mark.parametrize(
    "extra",
    [["--budget", "0"], ["--budget", "1.5"], ["--budget", "501"], ["--prune-rate", "1.0"]],
)
def test_bad_budgets_are_usage_errors(emb, tmp_path, extra, capsys) -> None:
    out = tmp_path / "c.npy"
    assert main(["select", str(emb), "-o", str(out), *extra, *FAST]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()


def test_runtime_errors_are_one_line(tmp_path, capsys) -> None:
    assert (
        main(
            ["select", str(tmp_path / "nope.npy"), "--budget", "0.1", "-o", str(tmp_path / "c.npy")]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_outputs_are_checked_before_work(emb, tmp_path, capsys) -> None:
    missing = tmp_path / "no" / "dir" / "c.npy"
    assert main(["select", str(emb), "--budget", "0.1", "-o", str(missing), *FAST]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["score", str(emb), "-o", str(emb), *FAST]) == 1
    assert "also an input" in capsys.readouterr().err
    assert main(["select", str(emb), "--budget", "0.1", "-o", str(tmp_path / "c.bin")]) == 2


def test_usage_errors_exit_2(capsys) -> None:
    assert main(["select", "--budget", "0.1"]) == 2
    assert "usage:" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_ctrl_c_stops_within_a_second_and_writes_nothing(emb, tmp_path) -> None:
    out = tmp_path / "c.npy"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zcore_fast.cli",
            "select",
            str(emb),
            "--budget",
            "0.1",
            "-o",
            str(out),
            "--n-sample",
            "1000000000",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    start = time.perf_counter()
    try:
        proc.wait(timeout=5)
    finally:
        proc.kill()
    assert time.perf_counter() - start < 1.0
    assert proc.returncode == 130
    assert "interrupted" in proc.stderr.read().decode()
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".c.npy")]


def test_outputs_get_ordinary_file_permissions(emb, tmp_path) -> None:
    out = tmp_path / "c.npy"
    assert main(["select", str(emb), "--budget", "10", "-o", str(out), "--quiet", *FAST]) == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_human_summary_reports_convergence(emb, tmp_path, capsys) -> None:
    out = tmp_path / "c.csv"
    assert main(["select", str(emb), "--budget", "0.1", "-o", str(out), *FAST]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("kept 50 of 500 rows") and "(Spearman) " in line
    rho = float(line.rsplit(" ", 1)[1])
    assert -1.0 <= rho <= 1.0
