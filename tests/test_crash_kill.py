"""Crash consistency: `select`, `score` and a column-cache build killed with
SIGKILL at random points never leave a partial output, never damage an
output that existed before, and the next run removes the dead writer's
temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from zcore_fast.io import example_embeddings

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

KILLS = 15
OLD = b"an output from an earlier run\n"


def _command(kind: str, emb: Path, out: Path) -> list[str]:
    args = ["--n-sample", "40000", "--threads", "1", "--seed", "3"]
    if kind == "select":
        return [
            sys.executable,
            "-m",
            "zcore_fast.cli",
            "select",
            str(emb),
            "--budget",
            "0.1",
            "-o",
            str(out),
            *args,
        ]
    return [sys.executable, "-m", "zcore_fast.cli", "score", str(emb), "-o", str(out), *args]


@pytest.mark.parametrize(("kind", "suffix"), [("select", ".csv"), ("score", ".npy")])
def test_sigkill_at_random_points(tmp_path: Path, kind: str, suffix: str) -> None:
    emb = tmp_path / "emb.npy"
    np.save(emb, example_embeddings(4_000, 32, seed=1))
    reference = tmp_path / f"reference{suffix}"
    start = time.perf_counter()
    subprocess.run(_command(kind, emb, reference), check=True, capture_output=True)
    full = time.perf_counter() - start
    expected = reference.read_bytes()
    out = tmp_path / f"out{suffix}"
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    delays = sorted(rng.uniform(0.0, full * 1.1, size=KILLS))
    for delay in delays:
        out.write_bytes(OLD)
        proc = subprocess.Popen(
            _command(kind, emb, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = out.read_bytes()
        # Either the earlier output, intact, or the whole new one: never a mix.
        assert got in (OLD, expected), f"killed after {delay:.2f} s: partial output"
    # The next run (which completes) cleans up after every killed writer.
    subprocess.run(_command(kind, emb, out), check=True, capture_output=True)
    assert out.read_bytes() == expected
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left == [], f"temporaries of killed runs left behind: {left}"


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    from zcore_fast.io import save_array

    out = tmp_path / "out.npy"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".out.npy.{dead.pid}.k2j4.tmp"
    live = tmp_path / f".out.npy.{os.getppid()}.x9a1.tmp"  # a live writer's
    other = tmp_path / f".other.npy.{dead.pid}.q1.tmp"  # another output's
    for p in (orphan, live, other):
        p.write_bytes(b"partial")
    save_array(out, np.arange(3))
    assert not orphan.exists()
    assert live.exists() and other.exists()
    assert np.load(out).tolist() == [0, 1, 2]


def test_sigkill_during_cache_build(tmp_path: Path) -> None:
    emb = tmp_path / "emb.npy"
    np.save(emb, example_embeddings(200_000, 64, seed=4))  # 51 MB: a build worth killing
    cache = tmp_path / "cache"
    reference = tmp_path / "reference.npy"

    def command(out: Path, *cache_args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "zcore_fast.cli",
            "score",
            str(emb),
            "-o",
            str(out),
            "--n-sample",
            "200",
            "--threads",
            "1",
            *cache_args,
        ]

    subprocess.run(command(reference, "--cache", "never"), check=True, capture_output=True)
    building = [*("--cache", "always", "--cache-dir", str(cache))]
    start = time.perf_counter()
    subprocess.run(command(tmp_path / "first.npy", *building), check=True, capture_output=True)
    full = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    for delay in sorted(rng.uniform(0.0, full, size=10)):
        proc = subprocess.Popen(
            command(tmp_path / "out.npy", *building),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Whatever the kill left, the next run uses a complete entry or
        # rebuilds it, and scores exactly as without a cache.
        out = tmp_path / "after.npy"
        subprocess.run(command(out, *building), check=True, capture_output=True)
        assert out.read_bytes() == reference.read_bytes(), f"killed after {delay:.2f} s"
        left = [p.name for p in cache.iterdir() if p.name.endswith(".tmp")]
        assert left == [], f"killed after {delay:.2f} s: temporaries left {left}"
