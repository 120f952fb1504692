"""Advisory file locks for the column cache (flock on `<entry>.lock`).

A builder holds an entry's lock exclusively; a process scoring from an
entry holds it shared, so `zcore-fast cache clear` (which tries an
exclusive lock without waiting) never removes an entry in use.

Lock files may be removed, but only by a holder of the exclusive lock
(`remove_held`). Whoever then wakes up holding a lock on the removed file
notices that the path now names another file (or none) and locks again, so
two processes never both believe they hold the same lock.

Inside `zcore_fast.cancel_on(event)` a wait for a lock (another call
building the same entry) polls instead of blocking, so the event stops it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zcore_fast._native import CANCEL_EVENT
from zcore_fast.cancel import check_cancelled

#: Seconds between tries of a lock awaited inside `cancel_on` (the
#: engine's own cancellation latency).
WAIT_POLL = 0.05

try:
    import fcntl
except ImportError:  # not POSIX: no locks; the atomic rename still
    fcntl = None  # type: ignore[assignment]  # keeps concurrent builds from corrupting an entry


def _acquire(path: Path, shared: bool, wait: bool) -> int | None:
    """An open descriptor of `path` holding the lock, or None when `wait` is
    False and another process holds it."""
    if fcntl is None:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if wait and CANCEL_EVENT.get() is not None:
                _wait_cancellable(fd, flags)
            else:
                fcntl.flock(fd, flags)
            now = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:  # KeyboardInterrupt while waiting included
            os.close(fd)
            raise
        if named is not None and (named.st_ino, named.st_dev) == (now.st_ino, now.st_dev):
            return fd
        os.close(fd)  # the holder we waited for removed this lock file: lock the new one


def _wait_cancellable(fd: int, flags: int) -> None:
    """flock(fd, flags), waiting the way a `cancel_on` scope can stop: a try
    every WAIT_POLL seconds, checking the event in between (a blocking flock
    cannot be interrupted from another thread)."""
    while True:
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            check_cancelled()
            time.sleep(WAIT_POLL)


@contextmanager
def hold(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Holds the lock on `path` (created if missing), waiting for it."""
    fd = _acquire(path, shared, wait=True)
    assert fd is not None  # waiting never gives up
    try:
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


@contextmanager
def try_hold(path: Path) -> Iterator[bool]:
    """Holds the exclusive lock on `path` if no one else does; yields
    whether it got it (False: in use, leave the entry alone)."""
    fd = _acquire(path, shared=False, wait=False)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def remove_held(path: Path) -> None:
    """Removes the lock file of an exclusive lock held by the caller."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
