"""`zcore-fast evaluate` and `zcore-fast plot` on the command line: outputs,
table, JSON, and the exit status and one-line message of each bad input."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from zcore_fast.cli import main

pytest.importorskip("matplotlib")

FAST = ["--n-sample", "3000", "--redund-nn", "50"]


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 1.5
    y = rng.integers(0, 3, size=400)
    x = (centres[y] + rng.normal(size=(400, 10))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def _evaluate(files, *extra: str) -> list[str]:
    return [
        "evaluate",
        str(files / "x.npy"),
        "--labels",
        str(files / "y.npy"),
        "--prune-rates",
        "0.5,0.9",
        "--seeds",
        "2",
        "-o",
        str(files / "report"),
        *FAST,
        *extra,
    ]


def test_evaluate_writes_report_and_table(files, capsys) -> None:
    assert main(_evaluate(files)) == 0
    out = capsys.readouterr().out
    assert "Linear-probe test accuracy" in out and "zcore" in out and "random" in out
    assert "all 320 training rows" in out and "held out" in out
    report = files / "report"
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert [(r["method"], r["prune_rate"]) for r in rows] == [
        ("full", "0"),
        ("zcore", "0.5"),
        ("zcore", "0.9"),
        ("random", "0.5"),
        ("random", "0.9"),
    ]
    assert rows[2]["n_selected"] == "32" and rows[2]["seeds"] == "2"
    assert len((report / "runs.csv").read_text().splitlines()) == 1 + 2 * 2 * 2
    png = (report / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_evaluate_json_test_set_and_no_plot(files, capsys) -> None:
    x, y = np.load(files / "x.npy"), np.load(files / "y.npy")
    np.save(files / "xt.npy", x[:100])
    np.save(files / "yt.npy", y[:100])
    argv = _evaluate(
        files,
        "--test",
        str(files / "xt.npy"),
        "--test-labels",
        str(files / "yt.npy"),
        "--json",
        "--no-plot",
        "--methods",
        "random,zcore",
    )
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] == 400 and summary["n_test"] == 100 and not summary["held_out"]
    assert summary["methods"] == ["random", "zcore"]
    assert summary["method_options"] == {"zcore": {"n_sample": 3000, "redund_nn": 50}}
    assert len(summary["runs"]) == 8 and "accuracy_plot" not in summary["files"]
    assert not (files / "report" / "accuracy.png").exists()


def test_method_options_reach_the_method(files, capsys) -> None:
    argv = _evaluate(files, "--methods", "ccs,random", "--option", "ccs.strata=5", "--json")
    assert main(argv) == 0
    opts = json.loads(capsys.readouterr().out)["method_options"]
    # the ZCore flags also configure CCS's default ZCore score
    assert opts == {"ccs": {"n_sample": 3000, "redund_nn": 50, "strata": 5}}


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"--labels": "short.npy"}, 1, "labels have 399 entries but embeddings have 400 rows"),
        ({"--labels": "one.npy"}, 1, "single class"),
        ({"--labels": "missing.npy"}, 1, "labels file"),
        ({"x": "missing.npy"}, 1, "no such file"),
        ({"--prune-rates": "0.5,1.2"}, 2, r"1.2 is outside \(0, 1\)"),
        ({"--prune-rates": "0"}, 2, r"outside \(0, 1\)"),
        ({"--prune-rates": "0.5,half"}, 2, "'half' is not a number"),
        ({"--methods": "zcore,kcenter"}, 2, "unknown method kcenter"),
        ({"--seeds": "0"}, 2, "--seeds must be at least 1"),
        ({"--option": "elfs.beta"}, 2, "METHOD.KEY=VALUE"),
        ({"--option": "elfs.beta=0.3"}, 2, "elfs is not in --methods"),
        ({"--option": "random.k=3"}, 2, "random has no option k; it takes none"),
        ({"--test-labels": "y.npy"}, 2, "--test and --test-labels together"),
        ({"-o": "x.npy"}, 2, "is a file"),
    ],
)
def test_evaluate_bad_input(files, capsys, change, status, message) -> None:
    np.save(files / "short.npy", np.load(files / "y.npy")[:-1])
    np.save(files / "one.npy", np.zeros(400, dtype=int))
    argv = _evaluate(files)
    for flag, value in change.items():
        path = str(files / value) if value.endswith(".npy") else value
        if flag == "x":
            argv[1] = path
        elif flag in argv:
            argv[argv.index(flag) + 1] = path
        else:
            argv += [flag, path]
    assert main(argv) == status
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("zcore-fast: error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), err
    assert not (files / "report" / "results.csv").exists()


def test_zcore_flags_without_a_zcore_method_are_a_usage_error(files, capsys) -> None:
    assert main(_evaluate(files, "--methods", "random")) == 2
    assert "neither zcore nor ccs" in capsys.readouterr().err


def test_plot_writes_the_score_map(files, capsys) -> None:
    x = files / "x.npy"
    assert main(["select", str(x), "--budget", "0.1", "-o", str(files / "k.csv"),
                 "--scores-out", str(files / "s.npy"), *FAST, "--quiet"]) == 0  # fmt: skip
    out = files / "map.png"
    argv = ["plot", str(x), "--scores", str(files / "s.npy"), "--coreset", str(files / "k.csv")]
    assert main([*argv, "-o", str(out), "--max-points", "300"]) == 0
    assert "drew 300 of 400 rows (pca)" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main([*argv, "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "n": 400,
        "shown": 400,
        "projection": "pca",
        "output": str(out),
    }


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--scores", "s9.npy", "-o", "m.png"], 1, r"scores have shape \(9,\)"),
        (["--scores", "nope.npy", "-o", "m.png"], 1, "scores file .* no such file"),
        (["--scores", "s.npy", "-o", "m.jpg"], 2, "written as .png"),
        (["--scores", "s.npy", "-o", "no/dir/m.png"], 1, "does not exist"),
        (["--scores", "s.npy", "--coreset", "c.bin", "-o", "m.png"], 1, "use .npy, .txt or .csv"),
    ],
)
def test_plot_bad_input(files, capsys, argv, status, message) -> None:
    np.save(files / "s.npy", np.zeros(400))
    np.save(files / "s9.npy", np.zeros(9))
    (files / "c.bin").write_bytes(b"")
    argv = [a if not a.endswith((".npy", ".png", ".jpg", ".bin")) else str(files / a) for a in argv]
    assert main(["plot", str(files / "x.npy"), *argv]) == status
    err = capsys.readouterr().err
    assert re.search(message, err), err
