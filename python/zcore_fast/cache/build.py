"""The out-of-core column cache: a dimension-major copy of .npy inputs,
built once on disk and scored from in place.

The engine needs the pool dimension-major. For arrays and small files it
transposes into memory (cheap); for a file larger than RAM that copy cannot
exist, so it is written once to the cache directory instead (by the Rust
engine, `_native.build_cache`) and memory-mapped from there: its pages stay
file-backed and the OS can evict them. The copy is reused while the inputs
are unchanged (entries.py: the key) and built atomically under a lock
(lock.py), so a failed or concurrent build never leaves a half-written
entry in use.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import numpy as np

from zcore_fast import _native
from zcore_fast.cache.admin import check_cache_dir, remove_entry, scan
from zcore_fast.cache.entries import (
    Entry,
    SourceStat,
    entry_for,
    matches,
    sidecar_text,
    write_sidecar,
)
from zcore_fast.cache.lock import hold, remove_held
from zcore_fast.cache.writer import npy_header
from zcore_fast.io import Embeddings, PathLike, as_sources
from zcore_fast.threads import available_threads

#: What a `cache=` value means: cache large inputs only, always, or never.
Mode = Literal["auto", "always", "never"]
#: `cache=` values: a Mode, or True ("always") / False ("never").
CacheMode = Union[Mode, bool]
CACHE_MODES: tuple[Mode, ...] = ("auto", "always", "never")
#: "auto" caches when the in-memory float32 copy would exceed this: below
#: it, transposing in RAM is cheap and leaves nothing on disk.
AUTO_BYTES = 1 << 30
#: Free space kept beyond what a build writes (file-system slack: blocks
#: of the copy, the sidecar and the lock file rounded up).
DISK_MARGIN = 64 << 10
#: Times an entry is rebuilt when `zcore-fast cache clear` removes it
#: between its build and its use, before giving up.
_ATTEMPTS = 3

Source = Union[str, np.ndarray]
ProgressFn = Callable[[int, int], object]


def default_cache_dir() -> Path:
    """$ZCORE_FAST_CACHE_DIR, else $XDG_CACHE_HOME/zcore-fast, else
    ~/.cache/zcore-fast."""
    explicit = os.environ.get("ZCORE_FAST_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "zcore-fast"


def cache_dir_or_default(cache_dir: PathLike | None) -> Path:
    """`cache_dir` as a Path, or the default."""
    return default_cache_dir() if cache_dir is None else Path(os.fspath(cache_dir)).expanduser()


@dataclass(frozen=True)
class Prepared:
    """What to score and whether a cache was used or built."""

    #: Sources to hand to `_native.score`: [the cache path] or the inputs.
    sources: list[Source]
    #: The cache file scored from, or None.
    path: str | None = None
    #: Whether this call built it.
    built: bool = False
    #: Seconds spent building it (0.0 when not built).
    seconds: float = 0.0


#: Writes an entry's dimension-major copy to a path: write(path, threads,
#: progress) -> (rows, cols, dtype), as `_native.build_cache` does.
Writer = Callable[[Path, int, Optional[ProgressFn]], tuple[int, int, str]]


@dataclass(frozen=True)
class _Plan:
    entry: Entry
    stats: tuple[SourceStat, ...]
    shape: tuple[int, int]
    dtype: str
    #: Builds the copy; None: the Rust engine from the .npy sources.
    write: Writer | None = None


def check_mode(cache: object) -> Mode:
    """The mode ("auto", "always" or "never") of a `cache=` value, True and
    False included."""
    if cache is True:
        return "always"
    if cache is False:
        return "never"
    for mode in CACHE_MODES:
        if cache == mode:
            return mode
    raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, True or False; got {cache!r}")


def prepare(
    sources: Embeddings,
    *,
    cache: CacheMode = "auto",
    cache_dir: PathLike | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> list[Source]:
    """The sources to hand to `_native.score` for `sources`: [the path of
    a dimension-major cache of them], built now if missing or stale, or
    `io.as_sources(sources)` unchanged.

    Args:
        sources: what `zcore_fast.score` takes: a path, an array, or a list
            of them; only a list of paths is cached.
        cache: "auto" caches when the float32 copy would exceed 1 GiB
            (AUTO_BYTES) and the input is not already one dimension-major
            file; "always" (True) whenever the inputs are all readable .npy
            paths; "never" (False) never.
        cache_dir: where entries live; default `default_cache_dir()`.
        threads: worker threads of the build; default all available cores.
        progress: called as progress(done, total) (rows written, as the
            engine reports them) while a cache is built.

    Raises:
        ZCoreError: too little free disk space for the cache (before any
            file is written).
        ValueError: a bad `cache`, or a source that changed during the build.
        NotADirectoryError: the cache directory is a file; OSError: it
            cannot be created (both say which directory and what to do).
    """
    items = as_sources(sources)
    with cached(items, cache=cache, cache_dir=cache_dir, threads=threads, progress=progress) as p:
        return p.sources


@contextmanager
def cached(
    sources: Sequence[Source],
    *,
    cache: CacheMode = "auto",
    cache_dir: PathLike | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[Prepared]:
    """`prepare` for sources from `io.as_sources`, holding the entry's lock
    shared while the caller scores, so that `zcore-fast cache clear` leaves
    an entry in use alone. Yields a `Prepared`."""
    plan = _plan(list(sources), check_mode(cache), cache_dir_or_default(cache_dir))
    if plan is None:
        yield Prepared(list(sources))
        return
    check_cache_dir(plan.entry.directory, cache_dir, create=True)
    with _use(plan, threads, progress) as prepared:
        yield prepared


@contextmanager
def cached_copy(
    stats: Sequence[SourceStat],
    shape: tuple[int, int],
    dtype: str,
    write: Writer,
    *,
    cache_dir: PathLike | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[Prepared]:
    """Like `cached`, for inputs the engine cannot read itself (Parquet):
    the entry keyed by `stats` (one record per source file) holding a
    `shape` copy of `dtype`, built by `write` when missing or stale."""
    plan = _Plan(
        entry_for(cache_dir_or_default(cache_dir), stats, dtype), tuple(stats), shape, dtype, write
    )
    check_cache_dir(plan.entry.directory, cache_dir, create=True)
    with _use(plan, threads, progress) as prepared:
        yield prepared


@contextmanager
def _use(plan: _Plan, threads: int | None, progress: ProgressFn | None) -> Iterator[Prepared]:
    """Yields `plan`'s entry, built first when missing or stale, its lock
    held shared while the caller uses it. The directory exists
    (`check_cache_dir`)."""
    if threads is None:
        threads = available_threads()
    entry = plan.entry
    seconds, built = 0.0, False
    for _ in range(_ATTEMPTS):
        with hold(entry.lock, shared=True):
            if matches(entry, plan.stats, plan.shape, plan.dtype):
                yield Prepared([str(entry.npy)], str(entry.npy), built, seconds)
                return
        # Missing or stale: build under the exclusive lock. A process that
        # waited here finds the entry built by the one before and reuses it.
        with hold(entry.lock):
            if not matches(entry, plan.stats, plan.shape, plan.dtype):
                seconds += _build(plan, threads, progress)
                built = True
    raise _native.ZCoreError(
        f"column cache {entry.npy} was gone or incomplete right after each of {_ATTEMPTS} "
        "builds (is `zcore-fast cache clear` running in a loop?); pass --cache never to "
        "score without it"
    )


def _plan(sources: list[Source], mode: Mode, directory: Path) -> _Plan | None:
    """The entry to use, or None to score `sources` as they are: caching is
    off, an input is an array, or a file is unreadable or does not fit (the
    engine then reports precisely what is wrong)."""
    if mode == "never" or not sources or not all(isinstance(s, str) for s in sources):
        return None
    try:
        stats, headers = zip(*(SourceStat.of(str(s)) for s in sources))
    except (OSError, ValueError):
        return None
    if any(len(h.shape) != 2 or h.dtype.kind != "f" or h.dtype.itemsize > 8 for h in headers):
        return None
    rows = headers[0].shape[0]
    if any(h.shape[0] != rows for h in headers) or rows < 2:
        return None
    cols = sum(h.shape[1] for h in headers)
    dtype = "float16" if all(h.dtype.itemsize == 2 for h in headers) else "float32"
    if mode == "auto":
        in_place = len(headers) == 1 and headers[0].fortran_order and headers[0].dtype.itemsize < 8
        if in_place or rows * cols * 4 <= AUTO_BYTES:
            return None
    return _Plan(entry_for(directory, stats, dtype), stats, (rows, cols), dtype)


def _build(plan: _Plan, threads: int, progress: ProgressFn | None) -> float:
    """Builds `plan.entry` (its exclusive lock held); returns the seconds
    taken. On any failure, Ctrl-C included, removes every file it wrote and
    the lock file, then re-raises."""
    entry = plan.entry
    start = time.perf_counter()
    tmp = entry.temp_path()
    done = False
    try:
        _remove_orphans(entry)
        _remove_replaced(plan)
        need = _check_space(entry.directory, plan)
        try:
            if plan.write is None:
                rows, cols, dtype = _native.build_cache(
                    [s.path for s in plan.stats], str(tmp), threads=threads, progress=progress
                )
            else:
                rows, cols, dtype = plan.write(tmp, threads, progress)
        except OSError as e:
            raise _write_failed(entry, e, need) from None
        if (rows, cols, dtype) != (*plan.shape, plan.dtype):
            raise _native.ZCoreError(
                f"column cache built as {rows} x {cols} {dtype}, expected "
                f"{plan.shape[0]} x {plan.shape[1]} {plan.dtype}; please report this"
            )
        _fsync(tmp)  # the data must be on disk before the name says it is complete
        changed = [s.path for s in plan.stats if s.change()]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed while its column cache was built; score again "
                "once it is no longer being written"
            )
        os.replace(tmp, entry.npy)
        write_sidecar(entry, plan.stats, plan.shape, plan.dtype)
        done = True
    finally:
        if not done:
            for path in (tmp, entry.npy, entry.sidecar):
                _unlink(path)
            remove_held(entry.lock)
    return time.perf_counter() - start


def _remove_orphans(entry: Entry) -> None:
    """Removes temporaries of `entry` left by builders that died (kill -9,
    power loss). The caller holds the entry's exclusive lock, which every
    builder holds while its temporary exists, so any such file is an
    orphan. (Their lock file stays: the kernel released its flock when the
    process died, and it is reused.)"""
    prefix = f".{entry.name}.npy."
    for name in os.listdir(entry.directory):
        if name.startswith(prefix) and name.endswith(".tmp"):
            _unlink(entry.directory / name)


def _check_space(directory: Path, plan: _Plan) -> int:
    """Refuses, before anything is written, a build the disk cannot hold:
    everything the build writes (the copy with its header, and the sidecar,
    which grows with the number of sources) plus DISK_MARGIN. Returns the
    bytes it needs."""
    need = build_bytes(plan.stats, plan.shape, plan.dtype) + DISK_MARGIN
    free = shutil.disk_usage(directory).free
    if free < need:
        raise _native.ZCoreError(
            f"not enough disk space for the column cache in {directory}: need {need:,} bytes, "
            f"{free:,} free; pass --cache-dir on a bigger disk (API: cache_dir=) or "
            "--cache never (API: cache=False)"
        )
    return need


def _write_failed(entry: Entry, error: OSError, need: int) -> OSError:
    """A failed write of the copy as one line naming the entry (not its
    temporary) and the space it needs. The engine's I/O errors carry their
    errno only in the text ("... (os error 27)"): a file-size limit or a
    disk filled by another process since `_check_space`."""
    number = error.errno
    found = re.search(r"\(os error (\d+)\)", str(error))
    if number is None and found:
        number = int(found.group(1))
    if number is None:
        return error
    free = shutil.disk_usage(entry.directory).free
    err = OSError(
        f"cannot write column cache {entry.npy}: {os.strerror(number)} (it needs {need:,} "
        f"bytes, {free:,} are free there); nothing was written; pass --cache-dir on a bigger "
        "disk (API: cache_dir=) or --cache never (API: cache=False)"
    )
    err.errno = number
    return err


def build_bytes(stats: Sequence[SourceStat], shape: tuple[int, int], dtype: str) -> int:
    """The bytes a build of `stats` as a `shape` copy of `dtype` writes."""
    copy = len(npy_header(shape, np.dtype(dtype))) + shape[0] * shape[1] * np.dtype(dtype).itemsize
    return copy + len(sidecar_text(stats, shape, dtype, copy).encode())


def _remove_replaced(plan: _Plan) -> None:
    """Removes entries of earlier versions of the same files (a source path
    in common whose file has changed since), unless in use: they can never
    be used again and may hold the disk space this build needs."""
    paths = {s.path for s in plan.stats}
    for info in scan(plan.entry.directory).entries:
        if info.entry != plan.entry and info.stale and paths & set(info.source_paths):
            remove_entry(info.entry)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = [
    "AUTO_BYTES",
    "CACHE_MODES",
    "CacheMode",
    "Mode",
    "Prepared",
    "build_bytes",
    "cached",
    "cached_copy",
    "check_mode",
    "default_cache_dir",
    "prepare",
]
