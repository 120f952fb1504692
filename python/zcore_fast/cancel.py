"""Stopping a running call from another thread: `with cancel_on(event): ...`.

A service runs calls in worker threads and wants to stop one (its client
went away) without touching the others. Every call made inside
`cancel_on(event)` raises `CancelledError` soon after `event.set()`: the Rust
engine checks the event every 50 ms (while a pool is prepared, a column
cache built, and samples drawn), the NumPy methods between their steps
(k-means iterations, blocks of a k-NN search).

The scope lives in a `contextvars.ContextVar` (owned by the native module,
which reads it when a call starts): it is per thread, so a scope in one
worker never reaches the calls of another, and nothing is process-wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from zcore_fast._native import CANCEL_EVENT, CancelledError


class Event(Protocol):
    """What `cancel_on` watches: `threading.Event` or anything with `is_set()`."""

    def is_set(self) -> bool:
        """True once the calls should stop."""
        ...


@contextmanager
def cancel_on(event: Event) -> Iterator[Event]:
    """Cancels the zcore-fast calls made inside this `with`, in this thread,
    once `event` is set (from any thread).

    >>> import threading, zcore_fast
    >>> stop = threading.Event()
    >>> with zcore_fast.cancel_on(stop):  # doctest: +SKIP
    ...     keep = zcore_fast.select_with("zcore", "emb.npy", 0.1)  # stop.set() elsewhere

    A cancelled call raises `zcore_fast.CancelledError` (a `ZCoreError`) within
    about 50 ms in the Rust engine, after the current step in the NumPy
    methods; it leaves nothing behind (a column cache being built is
    removed). An event already set cancels the next call at once. Scopes
    nest; the innermost one's event is watched. Raising from a `progress`
    callback stops a call too, with that exception.
    """
    token = CANCEL_EVENT.set(event)
    try:
        yield event
    finally:
        CANCEL_EVENT.reset(token)


def check_cancelled() -> None:
    """Raises `CancelledError` when the calling thread is inside `cancel_on(event)`
    and the event is set. The NumPy methods call it between steps."""
    event = CANCEL_EVENT.get()
    if event is not None and event.is_set():
        raise CancelledError("cancelled: the event given to zcore_fast.cancel_on was set")


__all__ = ["CancelledError", "Event", "cancel_on", "check_cancelled"]
