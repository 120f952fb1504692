"""The column cache's directory and disk space: a cache directory that is a
file is one clear error, wherever it came from, and the free-space check
counts everything a build writes before it writes anything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from disk_helpers import Mount, mounts
from zcore_fast.cache import build as zcache
from zcore_fast.cache.entries import SourceStat
from zcore_fast.cli import main

FAST = {"n_sample": 200, "redund_nn": 5, "backend": "cpu", "threads": 1}


@pytest.fixture(autouse=True)
def default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keeps every test (and its default cache) out of the real ~/.cache."""
    where = tmp_path / "default-cache"
    monkeypatch.setenv("ZCORE_FAST_CACHE_DIR", str(where))
    return where


@pytest.fixture()
def emb(tmp_path: Path) -> Path:
    path = tmp_path / "emb.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32))
    return path


@pytest.fixture()
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "not_a_dir"
    path.write_text("a file\n")
    return path


def test_env_var_naming_a_file(emb: Path, a_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZCORE_FAST_CACHE_DIR", str(a_file))
    with pytest.raises(NotADirectoryError) as info:
        zcore_fast.score(emb, cache="always", **FAST)
    assert str(info.value) == (
        f"column cache directory {a_file} (from $ZCORE_FAST_CACHE_DIR) is a file, not a "
        "directory; set ZCORE_FAST_CACHE_DIR to a directory (it is created if missing), or "
        "pass --cache never (API: cache=False)"
    )
    assert a_file.read_text() == "a file\n"
    # Where no cache is used, the setting is not in the way.
    assert zcore_fast.score(emb, cache="never", **FAST).shape == (60,)


def test_cache_dir_argument_naming_a_file(emb: Path, a_file: Path) -> None:
    with pytest.raises(NotADirectoryError, match=r"\(given as --cache-dir / cache_dir=\) is a"):
        zcore_fast.score(emb, cache="always", cache_dir=a_file, **FAST)
    with pytest.raises(NotADirectoryError, match=r"cannot be created: Not a directory; give a"):
        zcore_fast.score_report(emb, cache="always", cache_dir=a_file / "sub", **FAST)
    with pytest.raises(NotADirectoryError, match="is a file"):
        zcore_fast.cache.prepare(str(emb), cache="always", cache_dir=str(a_file))
    assert a_file.read_text() == "a file\n"


def test_default_directory_under_a_file(emb: Path, a_file: Path, monkeypatch) -> None:
    monkeypatch.delenv("ZCORE_FAST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(a_file))
    with pytest.raises(NotADirectoryError) as info:
        zcore_fast.score(emb, cache="always", **FAST)
    assert str(info.value).startswith(f"column cache directory {a_file}/zcore-fast (the default)")
    assert "set ZCORE_FAST_CACHE_DIR or pass --cache-dir (API: cache_dir=)" in str(info.value)


@pytest.mark.parametrize("argv", [["score", "-o", "s.npy", "--cache", "always"], ["cache"]])
def test_cli_env_var_naming_a_file(emb, a_file, monkeypatch, capsys, tmp_path, argv) -> None:
    monkeypatch.setenv("ZCORE_FAST_CACHE_DIR", str(a_file))
    monkeypatch.chdir(tmp_path)
    args = [*argv[:1], str(emb), *argv[1:], "--n-sample", "100"] if argv[0] == "score" else argv
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == (
        f"zcore-fast: error: column cache directory {a_file} (from $ZCORE_FAST_CACHE_DIR) is a "
        "file, not a directory; set ZCORE_FAST_CACHE_DIR to a directory (it is created if "
        "missing), or pass --cache never (API: cache=False)\n"
    )
    assert not (tmp_path / "s.npy").exists()


def _many_sources(folder: Path, count: int, rows: int) -> list[str]:
    """`count` one-column files with long names: a sidecar of ~100 KiB, more
    than DISK_MARGIN, for a copy of rows x count float32."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}_{'long-name-' * 18}.npy"
        np.save(path, rng.normal(size=(rows, 1)).astype(np.float32))
        paths.append(str(path))
    return paths


def test_space_counted_is_what_a_build_writes(tmp_path: Path) -> None:
    sources = _many_sources(tmp_path / "src", 300, 200)
    cdir = tmp_path / "c"
    zcore_fast.score(sources, cache="always", cache_dir=cdir, **FAST)
    written = sum(p.stat().st_size for p in cdir.iterdir())
    assert {p.suffix for p in cdir.iterdir()} == {".npy", ".json", ".lock"}
    stats = [SourceStat.of(s)[0] for s in sources]
    counted = zcache.build_bytes(stats, (200, 300), "float32")
    assert counted == written  # the copy, its header and the sidecar: all of it
    assert written - 200 * 300 * 4 > zcache.DISK_MARGIN  # the sidecar alone exceeds the margin


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator[Mount]:
    yield from mounts(tmp_path)


def test_build_refused_up_front_when_only_the_copy_fits(tmp_path: Path, mount) -> None:
    """On a real small file system the copy itself fits but the copy plus
    its sidecar does not: refused before a byte is written (counting only
    the copy would write 240 KB, then fail on the sidecar)."""
    sources = _many_sources(tmp_path / "src", 300, 200)
    copy = 200 * 300 * 4 + 128
    disk = mount(f"size={copy + zcache.DISK_MARGIN + (32 << 10)}")
    cdir = disk / "cache"
    with pytest.raises(zcore_fast.ZCoreError) as info:
        zcore_fast.score(sources, cache="always", cache_dir=cdir, **FAST)
    message = str(info.value)
    assert message.startswith(f"not enough disk space for the column cache in {cdir}: need ")
    assert "pass --cache-dir on a bigger disk" in message
    assert os.listdir(cdir) == []  # not even the lock file stays
    assert os.statvfs(disk).f_bfree == os.statvfs(disk).f_blocks  # nothing was ever written
    # The same build where it fits: it succeeds on the first try.
    roomy = mount(f"size={copy + (512 << 10)}")
    scores = zcore_fast.score(sources, cache="always", cache_dir=roomy, **FAST)
    assert scores.shape == (200,) and any(p.suffix == ".json" for p in roomy.iterdir())
