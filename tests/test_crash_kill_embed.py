"""Crash consistency of `zcore-fast embed` under SIGKILL: killed at every
kind of step (a batch's rows, a progress record, the manifest, the final
cut and rename, the record's removal) and after random delays, it never
leaves a partial .npy or manifest at the output path, never damages the
output of an earlier run, and `embed --resume` then finishes with exactly
the bytes of an uninterrupted run and nothing else left behind."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from crash_helpers import ForkServer
from embed_helpers import TINY_CLIP, write_images

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and fork are POSIX")
pytest.importorskip("torch")  # the `test` extra installs these; CI runs them for real
pytest.importorskip("open_clip")

#: Images: 6 batches of 4, so that a kill before each durability call
#: (fsync, replace, unlink: 28 of them) fits in the test's time.
IMAGES = 24
#: Kills after random delays (each followed by a resume, itself killed).
AT_TIMES = 10
#: Volatile manifest fields (when and how fast the run was).
VOLATILE = {"created", "seconds", "device_name", "versions"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ForkServer]:
    cfg = tmp_path_factory.mktemp("cfg")
    # The tiny architecture is registered in the server, so every fork knows it.
    setup = (
        f"import embed_helpers, pathlib; embed_helpers.tiny_clip_spec(pathlib.Path({str(cfg)!r}))"
    )
    fs = ForkServer(
        ["torch", "open_clip", "torchvision", "PIL.Image", "zcore_fast.embedding.run"], setup
    )
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    paths = write_images(folder, IMAGES, size=(32, 32))
    paths[9].write_bytes(b"not an image")  # a skipped image: the final cut drops a row
    return folder


def _argv(images: Path, *extra: str) -> list[str]:
    return [
        "embed",
        str(images),
        "-o",
        "emb.npy",
        "--model",
        f"open_clip:{TINY_CLIP}",
        "--pretrained",
        "random",
        *("--batch-size", "4", "--workers", "0", "--device", "cpu"),
        *("--checkpoint-every", "0.001", "-q"),
        *extra,
    ]


def _manifest(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}


class Outputs:
    """The reference outputs and an earlier run's, to check a folder against."""

    def __init__(self, server: ForkServer, images: Path, root: Path) -> None:
        ref, old = root / "ref", root / "old"
        ref.mkdir()
        old.mkdir()
        assert server.run(_argv(images), ref, count=ref / "count") == 0
        self.calls = int((ref / "count").read_text())
        self.npy = (ref / "emb.npy").read_bytes()
        self.manifest = _manifest(ref / "emb.manifest.json")
        assert server.run(_argv(images, "--dtype", "float32"), old) == 0  # other settings
        self.old_npy = (old / "emb.npy").read_bytes()
        self.old_manifest = (old / "emb.manifest.json").read_bytes()
        self.old = old

    def place_old(self, work: Path) -> None:
        for name in ("emb.npy", "emb.manifest.json"):
            shutil.copy(self.old / name, work / name)

    def check_killed(self, work: Path, had_old: bool, where: str) -> None:
        """What a kill may leave at the output paths: the earlier run's files
        intact, or the finished new ones, never anything in between."""
        npy, man = work / "emb.npy", work / "emb.manifest.json"
        new_npy = npy.exists() and npy.read_bytes() == self.npy
        old_npy = npy.exists() and npy.read_bytes() == self.old_npy
        assert new_npy or old_npy or not npy.exists(), f"{where}: partial .npy"
        assert had_old or not old_npy
        if man.exists():
            old_man = man.read_bytes() == self.old_manifest
            assert old_man or _manifest(man) == self.manifest, f"{where}: bad manifest"
        if npy.exists():
            assert man.exists(), f"{where}: a .npy without its manifest"
        record = work / "emb.npy.progress.json"
        if not record.exists() and npy.exists():  # no run in flight: a consistent pair
            assert (_manifest(man) == self.manifest) == new_npy, f"{where}: mixed outputs"

    def check_resumed(self, work: Path, where: str) -> None:
        assert (work / "emb.npy").read_bytes() == self.npy, f"{where}: resume differs"
        assert _manifest(work / "emb.manifest.json") == self.manifest, where
        left = sorted(p.name for p in work.iterdir())
        assert left == ["emb.manifest.json", "emb.npy", "run.log"], f"{where}: left {left}"


@pytest.fixture(scope="module")
def outputs(server: ForkServer, images: Path, tmp_path_factory) -> Outputs:
    return Outputs(server, images, tmp_path_factory.mktemp("outputs"))


def _resume(server: ForkServer, images: Path, outputs: Outputs, work: Path, where: str) -> None:
    """The run after a kill: --resume continues it. Killed before its first
    progress record, the run left nothing to resume, and --resume then
    refuses to replace an earlier output made with other settings (as
    without a kill), touching nothing; a plain run replaces it."""
    status = server.run(_argv(images, "--resume"), work)
    log = (work / "run.log").read_text()
    if status == 1 and "is from another run (dtype was 'float32'" in log:
        assert not (work / "emb.npy.progress.json").exists(), f"{where}: {log}"
        outputs.check_killed(work, True, where)
        status = server.run(_argv(images), work)
        log = (work / "run.log").read_text()
    assert status == 0, f"{where}: the next run failed: {log}"


def test_killed_at_each_durability_step(server, images, outputs, tmp_path) -> None:
    total = outputs.calls
    points = range(1, total + 1)
    for i, k in enumerate(points):
        work = tmp_path / f"at{k}"
        work.mkdir()
        had_old = i % 2 == 0
        if had_old:
            outputs.place_old(work)
        status = server.run(_argv(images), work, kill_at=k)
        where = f"killed before durability call {k} of {total}"
        assert status == -9, f"{where}: not killed ({status})"
        outputs.check_killed(work, had_old, where)
        _resume(server, images, outputs, work, where)
        outputs.check_resumed(work, where)


def test_killed_after_random_delays_then_resumes_killed_too(
    server, images, outputs, tmp_path
) -> None:
    work = tmp_path / "ref"
    work.mkdir()
    start = time.perf_counter()
    assert server.run(_argv(images), work) == 0
    full = time.perf_counter() - start
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    for i in range(AT_TIMES):
        work = tmp_path / f"t{i}"
        work.mkdir()
        had_old = i % 2 == 1
        if had_old:
            outputs.place_old(work)
        delays = rng.uniform(0.0, full, size=2)
        where = f"killed after {delays[0]:.2f} s, its resume after {delays[1]:.2f} s"
        server.kill_after(_argv(images), work, delays[0])
        outputs.check_killed(work, had_old, where)
        server.kill_after(_argv(images, "--resume"), work, delays[1])
        outputs.check_killed(work, had_old, where)
        _resume(server, images, outputs, work, where)
        outputs.check_resumed(work, where)
