"""Full disks for a column-cache build and for `embed`: a file-size limit
(RLIMIT_FSIZE, any user) and a small tmpfs (root only). Each is one line
naming the path and the space needed, exit status 1, nothing half-written
left behind (no copy, temporary, partial array, progress record or lock),
and an earlier output intact."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from crash_helpers import ForkServer
from disk_helpers import Mount, file_size_limit, mounts
from embed_helpers import TINY_CLIP, write_images

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux limits and mounts")
OLD = b"an earlier output\n"
#: 20,000 x 16 float32: a 1.3 MB copy.
ROWS, DIMS = 20_000, 16


@pytest.fixture(scope="module")
def emb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "emb.npy"
    np.save(path, np.random.default_rng(2).normal(size=(ROWS, DIMS)).astype(np.float32))
    return path


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator[Mount]:
    yield from mounts(tmp_path)


def _score(emb: Path, out: Path, cache: Path, limit: int | None = None):
    cmd = [sys.executable, "-m", "zcore_fast.cli", "score", str(emb), "-o", str(out)]
    return subprocess.run(
        [*cmd, "--n-sample", "100", "--cache", "always", "--cache-dir", str(cache)],
        preexec_fn=file_size_limit(limit) if limit is not None else None,
        capture_output=True,
        text=True,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cache_build_past_a_file_size_limit(tmp_path: Path, emb: Path) -> None:
    out, cache = tmp_path / "scores.npy", tmp_path / "cache"
    out.write_bytes(OLD)
    line = _one_line(_score(emb, out, cache, limit=256 << 10))
    m = re.fullmatch(
        rf"zcore-fast: error: cannot write column cache {cache}/columns-[0-9a-f]{{16}}\.npy: "
        r"File too large \(it needs ([\d,]+) bytes, [\d,]+ are free there\); nothing was "
        r"written; pass --cache-dir on a bigger disk \(API: cache_dir=\) or --cache never "
        r"\(API: cache=False\)",
        line,
    )
    assert m, line
    assert int(m.group(1).replace(",", "")) > ROWS * DIMS * 4  # the copy and more
    assert list(cache.iterdir()) == []  # no copy, temporary, sidecar or lock file
    assert out.read_bytes() == OLD


def test_cache_build_on_a_small_file_system(mount, emb: Path, tmp_path: Path) -> None:
    disk = mount("size=512k")
    out, cache = tmp_path / "scores.npy", disk / "cache"
    out.write_bytes(OLD)
    line = _one_line(_score(emb, out, cache))
    assert re.fullmatch(
        rf"zcore-fast: error: not enough disk space for the column cache in {cache}: need "
        r"[\d,]+ bytes, [\d,]+ free; pass --cache-dir on a bigger disk \(API: cache_dir=\) "
        r"or --cache never \(API: cache=False\)",
        line,
    ), line
    assert list(cache.iterdir()) == []
    assert out.read_bytes() == OLD
    # Room for it: the same command builds the entry and scores.
    roomy = mount("size=4m")
    assert _score(emb, out, roomy / "cache").returncode == 0
    assert np.load(out).shape == (ROWS,)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ForkServer]:
    pytest.importorskip("torch")  # the `test` extra installs these; CI runs them for real
    pytest.importorskip("open_clip")
    cfg = tmp_path_factory.mktemp("cfg")
    setup = f"import embed_helpers as h, pathlib; h.tiny_clip_spec(pathlib.Path({str(cfg)!r}))"
    modules = ["torch", "torchvision", "open_clip", "PIL.Image", "zcore_fast.embedding.run"]
    fs = ForkServer(modules, setup)
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, 12)
    return folder


#: torch.nn.Flatten on 3 x 224 x 224 inputs: 150,528 float16 columns, so
#: 12 images need 3.6 MB.
EMBED = ["--model", "torch.nn:Flatten", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
NEED = 12 * 3 * 224 * 224 * 2 + 128


def _embed(server: ForkServer, images: Path, folder: Path, log: Path, fsize: int = 0) -> str:
    out = folder / "emb.npy"
    out.write_bytes(OLD)
    argv = ["embed", str(images), "-o", str(out), *EMBED, "-q"]
    assert server.run(argv, folder, fsize=fsize, log=log) == 1, log.read_text()
    lines = log.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert out.read_bytes() == OLD
    assert sorted(p.name for p in folder.iterdir()) == ["emb.npy"]  # no partial, no record
    return lines[0]


def test_embed_past_a_file_size_limit(server, images, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    line = _embed(server, images, folder, tmp_path / "log", fsize=1 << 20)
    assert line.startswith(
        f"zcore-fast: error: cannot write {folder}/emb.npy: File too large (it needs "
        f"{NEED:,} bytes, "
    ), line
    assert line.endswith(
        " are free there); nothing was written; free some space or write it elsewhere"
    )


def test_embed_on_a_small_file_system(server, images, mount, tmp_path: Path) -> None:
    """Without the space reserved up front, the rows written through the
    memory map found the disk full and the run died of SIGBUS (exit 135),
    leaving a 3.6 MB sparse .partial and a progress record."""
    disk = mount("size=1m")
    line = _embed(server, images, disk, tmp_path / "log")
    assert re.fullmatch(
        rf"zcore-fast: error: cannot write {disk}/emb\.npy: No space left on device \(it "
        rf"needs {NEED:,} bytes, [\d,]+ are free there\); nothing was written; free some "
        r"space or write it elsewhere",
        line,
    ), line


def test_embed_fills_the_disk_with_its_manifest(server, tmp_path: Path) -> None:
    """The rows (2 KB) fit under the limit, the manifest (a line per image,
    long names: 6 KB) does not: the run stops at the very end with one line
    naming the manifest and its size, publishes nothing, keeps its progress,
    and --resume (with room) then gives the bytes of an uninterrupted run."""
    images = tmp_path / "images"
    images.mkdir()
    for i, path in enumerate(write_images(tmp_path / "raw", 40, size=(32, 32))):
        path.rename(images / f"{'x' * 120}{i:02d}.png")
    argv = ["embed", str(images), "-o", "emb.npy", "--model", f"open_clip:{TINY_CLIP}"]
    argv += ["--pretrained", "random", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    work.mkdir()
    assert server.run([*argv, "-q"], ref, log=tmp_path / "ref.log") == 0
    manifest = (ref / "emb.manifest.json").read_bytes()
    assert len(manifest) > 4096 >= (ref / "emb.npy").stat().st_size
    (work / "emb.npy").write_bytes(OLD)
    log = tmp_path / "log"
    assert server.run([*argv, "-q"], work, fsize=4096, log=log) == 1
    lines = [x for x in log.read_text().splitlines() if not x.startswith("WARNING:root:")]
    assert len(lines) == 1, lines
    m = re.fullmatch(
        r"zcore-fast: error: cannot write emb\.manifest\.json: File too large \(it needs "
        r"([\d,]+) bytes, [\d,]+ are free there\); nothing was written; free some space or "
        r"write it elsewhere; the progress is saved: rerun with --resume once there is room",
        lines[0],
    )
    assert m, lines[0]
    # The same manifest as the reference's but for its timings' digits.
    assert abs(int(m.group(1).replace(",", "")) - len(manifest)) < 16
    assert (work / "emb.npy").read_bytes() == OLD
    left = sorted(p.name for p in work.iterdir())
    assert left == ["emb.npy", "emb.npy.partial", "emb.npy.progress.json"], left
    assert server.run([*argv, "-q", "--resume"], work, log=log) == 0, log.read_text()
    assert (work / "emb.npy").read_bytes() == (ref / "emb.npy").read_bytes()
    assert sorted(p.name for p in work.iterdir()) == ["emb.manifest.json", "emb.npy"]
