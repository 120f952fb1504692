"""`zcore-fast embed` on the command line: flags, exit statuses, one-line
errors, interruption and --resume, and embed -> select end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embed_helpers import tiny_clip_spec, write_images
from zcore_fast.cli import main

pytest.importorskip("torch")  # the `test` extra installs these; CI runs them for real
pytest.importorskip("open_clip")

FAST = ["--batch-size", "4", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    return tiny_clip_spec(tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    paths = write_images(root, 14)
    paths[2].write_bytes(b"broken")
    return root


def test_embed_then_select(spec, folder, tmp_path, capsys) -> None:
    out = tmp_path / "emb.npy"
    argv = [
        "embed",
        str(folder),
        "-o",
        str(out),
        "--model",
        spec,
        "--pretrained",
        "random",
        "--model",
        spec,
        "--weights",
        "random",
        *FAST,
        "--json",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 13 and summary["images"] == 14 and summary["skipped"] == 1
    assert summary["dims"] == [24, 24] and summary["outputs"] == [str(out)]
    assert summary["dtype"] == "float16" and summary["device"] == "cpu"
    emb = np.load(out)
    assert emb.shape == (13, 48)
    np.testing.assert_array_equal(emb[:, :24], emb[:, 24:])  # same spec, same seeded weights
    keep = tmp_path / "keep.npy"
    select = [
        "select",
        str(out),
        "--budget",
        "0.5",
        "-o",
        str(keep),
        "--n-sample",
        "2000",
        "--redund-nn",
        "5",
        "--quiet",
    ]
    assert main(select) == 0
    idx = np.load(keep)
    assert idx.size == 7 and idx.max() < 13


def test_human_summary_and_skipped_note(spec, folder, tmp_path, capsys) -> None:
    out = tmp_path / "h.npy"
    assert (
        main(
            ["embed", str(folder), "-o", str(out), "--model", spec, "--pretrained", "random", *FAST]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert f"embedded 13 of 14 images -> {out} (13 x 24 float16)" in captured.out
    assert "skipped 1 unreadable image(s); listed in" in captured.err
    assert (
        main(
            [
                "embed",
                str(folder),
                "-o",
                str(out),
                "--model",
                spec,
                "--pretrained",
                "random",
                *FAST,
                "--resume",
            ]
        )
        == 0
    )
    assert "is already complete" in capsys.readouterr().out


def test_interrupt_then_resume(spec, folder, tmp_path, capsys, monkeypatch) -> None:
    from zcore_fast import progress

    whole, part = tmp_path / "whole.npy", tmp_path / "part.npy"
    base = ["--model", spec, "--pretrained", "random", *FAST, "--quiet"]
    assert main(["embed", str(folder), "-o", str(whole), *base]) == 0
    calls = []
    real = progress.ProgressBar.update

    def interrupt(self, done, total):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(self, done, total)

    monkeypatch.setattr(progress.ProgressBar, "update", interrupt)
    assert main(["embed", str(folder), "-o", str(part), *base]) == 130
    assert "interrupted; progress saved; rerun with --resume" in capsys.readouterr().err
    monkeypatch.setattr(progress.ProgressBar, "update", real)
    assert main(["embed", str(folder), "-o", str(part), *base]) == 1
    assert "pass --resume" in capsys.readouterr().err
    assert main(["embed", str(folder), "-o", str(part), *base, "--resume"]) == 0
    assert part.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--model", "resnet18"], 2, "unknown model spec 'resnet18'; use one of: open_clip:ARCH"),
        (["--weights", "w.pth", "--model", "timm:resnet18"], 2, "must follow the --model"),
        ([], 2, "no model given: pass --model SPEC"),
        (["--model", "timm:resnet18", "--weights", "a", "--weights", "b"], 2, "already has"),
        (["--model", "open_clip:RN50", "--pretrained", "openai"], 1, "not in the local cache"),
        (["--model", "timm:resnet18", "--batch-size", "0"], 2, "--batch-size must be >= 1"),
        (
            ["--model", "open_clip:RN50", "--pretrained", "random", "--device", "cuda:7"],
            1,
            "no CUDA GPU is visible",
        ),
    ],
)
def test_errors_are_one_line_with_the_right_status(
    folder, tmp_path, capsys, monkeypatch, argv, status, message
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # empty model caches
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    if "cuda:7" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    assert main(["embed", str(folder), "-o", str(tmp_path / "e.npy"), *argv]) == status
    err = capsys.readouterr().err
    assert message in err
    # one error line (argparse's own for flag order: "zcore-fast embed: error: ...")
    assert err.count(" error: ") == 1 and "Traceback" not in err


def test_empty_source_and_help(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    argv = [
        "embed",
        str(tmp_path / "empty"),
        "-o",
        str(tmp_path / "e.npy"),
        "--model",
        "timm:resnet18",
        "--weights",
        "random",
    ]
    assert main(argv) == 1
    assert "no images found under" in capsys.readouterr().err
    assert main(["embed", "--help"]) == 0
    assert "zcore_fast.embedding.zoo:efficientnet_lite0" in capsys.readouterr().out


def test_worker_errors_are_reported_by_their_last_line() -> None:
    from zcore_fast.cli.embed import _one_line

    worker = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1\nValueError: the transform gives different shapes'
    )
    assert _one_line(worker) == "ValueError: the transform gives different shapes"
    assert _one_line(RuntimeError("CUDA out of memory. Tried")) == (
        "CUDA out of memory. Tried (lower --batch-size)"
    )
