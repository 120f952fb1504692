"""Full disks and failing writes: a file-size limit (RLIMIT_FSIZE, any
user), a small tmpfs and a read-only mount (root only). Each gives one line
naming the path and the space needed, exit status 1, no partial file or
temporary left, and an earlier output intact."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from disk_helpers import Mount, file_size_limit, mounts
from zcore_fast.io import example_embeddings

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux limits and mounts")
OLD = b"an earlier output\n"


@pytest.fixture(scope="module")
def emb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "emb.npy"
    np.save(path, example_embeddings(20_000, 8, seed=2))
    return path


def _run(out: Path, emb: Path, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    kind = ["score"] if out.suffix == ".npy" else ["select", "--budget", "0.9"]
    cmd = [sys.executable, "-m", "zcore_fast.cli", *kind, str(emb), "-o", str(out)]
    return subprocess.run(
        [*cmd, "--n-sample", "500"],
        preexec_fn=file_size_limit(limit) if limit is not None else None,
        capture_output=True,
        text=True,
    )


def _check_refused(result: subprocess.CompletedProcess[str], out: Path) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"zcore-fast: error: cannot write {out}: "), lines[0]
    assert "bytes" in lines[0] and "nothing was written" in lines[0]
    assert out.read_bytes() == OLD
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("name", ["scores.npy", "keep.csv", "keep.txt"])
def test_file_size_limit_mid_write(tmp_path: Path, emb: Path, name: str) -> None:
    out = tmp_path / name
    out.write_bytes(OLD)
    _check_refused(_run(out, emb, limit=4096), out)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    yield from mounts(tmp_path)


@pytest.mark.parametrize("name", ["scores.npy", "keep.csv"])
def test_small_file_system_fills_up(mount, emb: Path, name: str) -> None:
    disk = mount("size=64k")
    out = disk / name
    out.write_bytes(OLD)
    _check_refused(_run(out, emb), out)


def test_read_only_directory(mount, emb: Path) -> None:
    disk = mount("size=4m")
    out = disk / "scores.npy"
    out.write_bytes(OLD)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = _run(out, emb)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"zcore-fast: error: cannot write {out}: ")
    assert "Read-only file system; nothing was written; choose a directory" in result.stderr
    assert out.read_bytes() == OLD


def test_output_on_another_file_system_via_symlink(mount, tmp_path: Path, emb: Path) -> None:
    disk = mount("size=4m")
    link = tmp_path / "link.npy"
    link.symlink_to(disk / "scores.npy")
    result = _run(link, emb)
    assert result.returncode == 0, result.stderr
    assert np.load(disk / "scores.npy").shape == (20_000,)
