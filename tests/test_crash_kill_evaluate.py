"""Crash consistency of `zcore-fast evaluate` writing its report under
SIGKILL, at every durability call of the report's files and after random
delays: each report file is an earlier run's, intact byte for byte, or the
complete new one, and the next run removes the dead run's temporaries."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from crash_helpers import ForkServer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and fork are POSIX")
pytest.importorskip("matplotlib")

FILES = ("results.csv", "runs.csv", "accuracy.png")
#: Columns of runs.csv that differ between runs (timings).
TIMINGS = {"select_seconds", "probe_seconds"}
#: Kills after random delays.
AT_TIMES = 16


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    fs = ForkServer(["matplotlib.pyplot", "zcore_fast.cli.evaluate", "zcore_fast.evaluation"])
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 1.5
    y = rng.integers(0, 3, size=300)
    np.save(root / "x.npy", (centres[y] + rng.normal(size=(300, 8))).astype(np.float32))
    np.save(root / "y.npy", y)
    return root


def _argv(data: Path) -> list[str]:
    return [
        "evaluate",
        str(data / "x.npy"),
        "--labels",
        str(data / "y.npy"),
        *("--prune-rates", "0.5,0.8", "--methods", "zcore,random", "--seeds", "1"),
        *("--n-sample", "2000", "--redund-nn", "20", "--threads", "1", "-o", "report", "-q"),
    ]


def _runs(text: bytes) -> list[dict[str, str]]:
    rows = csv.DictReader(io.StringIO(text.decode()))
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


class Report:
    """An uninterrupted run's report, to check killed runs against."""

    def __init__(self, server: ForkServer, data: Path, work: Path) -> None:
        start = time.perf_counter()
        assert server.run(_argv(data), work, count=work / "count") == 0
        self.seconds = time.perf_counter() - start
        self.calls = int((work / "count").read_text())
        self.bytes = {name: (work / "report" / name).read_bytes() for name in FILES}
        self.runs = _runs(self.bytes["runs.csv"])

    def is_new(self, name: str, got: bytes) -> bool:
        if name == "runs.csv":
            return got.endswith(b"\n") and _runs(got) == self.runs
        return got == self.bytes[name]

    def check_killed(self, report: Path, had_old: bool, where: str) -> None:
        for name in FILES:
            path = report / name
            if not path.exists():
                assert not had_old, f"{where}: {name} of the earlier run is gone"
                continue
            got = path.read_bytes()
            old = had_old and got == _old(name)
            assert old or self.is_new(name, got), f"{where}: {name} is partial or corrupt"

    def check_complete(self, report: Path, where: str) -> None:
        for name in FILES:
            assert self.is_new(name, (report / name).read_bytes()), f"{where}: {name}"
        assert sorted(os.listdir(report)) == sorted(FILES), f"{where}: temporaries left"


def _old(name: str) -> bytes:
    return f"{name} of an earlier evaluation\n".encode()


@pytest.fixture(scope="module")
def reference(server: ForkServer, data: Path, tmp_path_factory) -> Report:
    return Report(server, data, tmp_path_factory.mktemp("reference"))


def _work(tmp_path: Path, name: str, had_old: bool) -> Path:
    work = tmp_path / name
    (work / "report").mkdir(parents=True)
    if had_old:
        for f in FILES:
            (work / "report" / f).write_bytes(_old(f))
    return work


def test_png_and_tables_are_reproducible(server, data, reference, tmp_path) -> None:
    work = _work(tmp_path, "again", had_old=False)
    assert server.run(_argv(data), work) == 0
    reference.check_complete(work / "report", "a second run")


def test_killed_at_each_durability_call(server, data, reference, tmp_path) -> None:
    for k in range(1, reference.calls + 1):
        had_old = k % 2 == 1
        work = _work(tmp_path, f"at{k}", had_old)
        where = f"killed before durability call {k} of {reference.calls}"
        assert server.run(_argv(data), work, kill_at=k) == -9, where
        reference.check_killed(work / "report", had_old, where)
        assert server.run(_argv(data), work) == 0, where
        reference.check_complete(work / "report", where)


def test_killed_after_random_delays(server, data, reference, tmp_path) -> None:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    delays = sorted(rng.uniform(0.0, reference.seconds * 1.1, size=AT_TIMES))
    for i, delay in enumerate(delays):
        had_old = i % 2 == 0
        work = _work(tmp_path, f"t{i}", had_old)
        where = f"killed after {delay:.2f} s"
        server.kill_after(_argv(data), work, delay)
        reference.check_killed(work / "report", had_old, where)
    # One next run in each folder, after all the kills: it cleans up after them.
    for i in range(AT_TIMES):
        work = tmp_path / f"t{i}"
        assert server.run(_argv(data), work) == 0
        reference.check_complete(work / "report", f"the run after kill {i}")
