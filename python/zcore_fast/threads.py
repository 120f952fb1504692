"""How many worker threads this process may use, and capping the thread
pools that belong to the whole process (BLAS's) from calls that may run in
several threads at once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable


def available_threads() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Sets a process-wide thread count to n, recording in `originals` (by
#: library) the count each library had before the first change.
Setter = Callable[[int, dict[str, int]], None]
#: Puts back the counts recorded in `originals`.
Restorer = Callable[[dict[str, int]], None]


class SharedCap:
    """A thread count that belongs to the whole process (BLAS's pool), capped
    by calls that may overlap in time, from several threads.

    Why not save, set and restore per call (threadpoolctl's own context
    manager): when calls overlap, the saves and restores interleave. A caps
    at 1 (saving 2), B caps at 2 (saving 1), A restores 2, B restores 1, and
    the process keeps one BLAS thread after both have returned. Here every
    cap in force is counted under one lock: while any is, the count is the
    smallest of them; when the last ends, the counts from before the first
    are put back. A call's results never depend on it: each BLAS product
    (OpenBLAS splits rows and columns among threads, never the sum) gives the
    same bits for any thread count (tests/test_service_threads.py).
    """

    def __init__(self, set_threads: Setter, restore: Restorer) -> None:
        self._set, self._restore = set_threads, restore
        self._lock = threading.Lock()
        self._caps: list[int] = []
        self._current: int | None = None
        self._originals: dict[str, int] = {}

    @contextmanager
    def __call__(self, threads: int | None) -> Iterator[None]:
        """Holds a cap of `threads` (None: no cap) while inside."""
        if threads is None:
            yield
            return
        with self._lock:
            self._caps.append(threads)
            self._apply()
        try:
            yield
        finally:
            with self._lock:
                self._caps.remove(threads)
                if self._caps:
                    self._apply()
                else:
                    originals, self._originals, self._current = self._originals, {}, None
                    self._restore(originals)

    def _apply(self) -> None:
        wanted = min(self._caps)
        if wanted != self._current:
            self._set(wanted, self._originals)
            self._current = wanted

    @property
    def active(self) -> tuple[int, ...]:
        """The caps in force now (for tests and diagnostics)."""
        with self._lock:
            return tuple(self._caps)


def _blas_controllers(per_thread: bool) -> list[object]:
    """threadpoolctl's controller of every BLAS library loaded (faiss and
    NumPy may each bring an OpenBLAS) whose thread count is per calling
    thread (`per_thread`) or the whole process's, or [] without threadpoolctl.

    An OpenBLAS built on OpenMP (faiss-cpu's) keeps its count in OpenMP's
    per-thread setting: set from one thread, it changes nothing in another.
    And NumPy's OpenBLAS (0.3.31, pthreads) ignores a count set from a
    thread other than the main one once the main thread has set one: a cap
    taken in a worker thread is then not in force. Only speed depends on
    these counts, never results.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it, BLAS follows OMP_NUM_THREADS
        return []
    return [
        lib
        for lib in ThreadpoolController().select(user_api="blas").lib_controllers
        if (getattr(lib, "threading_layer", None) == "openmp") == per_thread
    ]


def _set_blas(threads: int, originals: dict[str, int]) -> None:
    for lib in _blas_controllers(per_thread=False):
        path = lib.filepath  # type: ignore[attr-defined]
        originals.setdefault(path, lib.num_threads)  # type: ignore[attr-defined]
        lib.set_num_threads(threads)  # type: ignore[attr-defined]


def _restore_blas(originals: dict[str, int]) -> None:
    for lib in _blas_controllers(per_thread=False):
        path = lib.filepath  # type: ignore[attr-defined]
        if path in originals:
            lib.set_num_threads(originals[path])  # type: ignore[attr-defined]


_process_blas = SharedCap(_set_blas, _restore_blas)


@contextmanager
def _calling_thread_blas(threads: int | None) -> Iterator[None]:
    """Caps the per-thread BLAS libraries in this thread only, and puts this
    thread's counts back after: per-thread state cannot interleave across
    calls, so a plain save and restore is right here."""
    libs = [] if threads is None else _blas_controllers(per_thread=True)
    saved = [(lib, lib.num_threads) for lib in libs]  # type: ignore[attr-defined]
    for lib, _ in saved:
        lib.set_num_threads(threads)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for lib, count in saved:
            lib.set_num_threads(count)  # type: ignore[attr-defined]


class _BlasCap:
    """`blas_threads`: caps every BLAS library's threads while inside."""

    @contextmanager
    def __call__(self, threads: int | None) -> Iterator[None]:
        """Caps every BLAS library's threads at `threads` (None: no cap)
        while inside; needs threadpoolctl (optional; without it a no-op).
        Safe from several threads at once: libraries with one count per
        process share it through `SharedCap`, those with one per thread are
        capped in the calling thread, where the call's BLAS work runs."""
        with _process_blas(threads), _calling_thread_blas(threads):
            yield

    @property
    def active(self) -> tuple[int, ...]:
        """The process-wide caps in force now (for tests and diagnostics)."""
        return _process_blas.active


#: The cap on every BLAS library's threads: `with blas_threads(2): ...`.
blas_threads = _BlasCap()
