"""Shared by the full-disk tests: small tmpfs mounts (root only) that the
test unmounts again, and a file-size limit for a child process (any user)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: make(options) -> the mount point of a new tmpfs mounted with `options`.
Mount = Callable[[str], Path]


def mounts(tmp_path: Path) -> Iterator[Mount]:
    """The body of a `mount` fixture: skips the test unless it may mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def make(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)])
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn capping the files a child writes at `limit` bytes; a
    write past it fails with EFBIG (SIGXFSZ ignored) instead of killing it."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return cap
