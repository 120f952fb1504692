"""Listing and clearing a column cache directory (`zcore-fast cache`), and
refusing one that is a file."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zcore_fast.cache.entries import PREFIX, Entry, npy_complete, read_sidecar
from zcore_fast.cache.lock import remove_held, try_hold
from zcore_fast.io import PathLike

#: Temporary files older than this are leftovers of a killed build (a
#: running build holds its entry's lock, so its file is never removed).
TEMP_MAX_AGE = 3600.0


@dataclass(frozen=True)
class EntryInfo:
    """One entry and whether it can still be used."""

    entry: Entry
    #: The sidecar's record (sources, rows, cols, dtype, bytes, created), or
    #: None when it is missing or unreadable.
    record: dict[str, Any] | None
    #: Bytes of its files (the .npy and the sidecar).
    bytes: int
    #: Why it can no longer be used ("source changed: PATH", ...), or None.
    problem: str | None

    @property
    def stale(self) -> bool:
        """True when it can never be used again."""
        return self.problem is not None

    @property
    def source_paths(self) -> list[str]:
        """The real paths of its sources, in order (empty without a record)."""
        return [] if self.record is None else [s.path for s in self.record["sources"]]


@dataclass(frozen=True)
class TempFile:
    """A temporary file of a build: running, or left by a killed one."""

    path: Path
    bytes: int
    age_seconds: float

    @property
    def entry(self) -> Entry:
        """The entry it was building (from its name, .<entry>.npy.<pid>.<token>.tmp)."""
        return Entry(self.path.parent, self.path.name[1:].split(".npy.", 1)[0])


@dataclass(frozen=True)
class Listing:
    """The contents of a cache directory."""

    directory: Path
    entries: list[EntryInfo] = field(default_factory=list)
    temps: list[TempFile] = field(default_factory=list)
    #: Lock files with no entry (left by a killed build).
    locks: list[Path] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes of every entry and temporary file."""
        return sum(e.bytes for e in self.entries) + sum(t.bytes for t in self.temps)


def scan(directory: Path) -> Listing:
    """What `directory` holds (an empty listing when it does not exist)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return Listing(directory)
    stems = sorted(
        {
            n.rsplit(".", 1)[0]
            for n in names
            if n.startswith(PREFIX) and n.endswith((".npy", ".json"))
        }
    )
    entries = [_info(Entry(directory, stem)) for stem in stems]
    now = time.time()
    temps = []
    for name in names:
        if name.startswith("." + PREFIX) and name.endswith(".tmp"):
            st = _stat(directory / name)
            if st is not None:
                temps.append(TempFile(directory / name, st.st_size, now - st.st_mtime))
    known = set(stems)
    locks = [
        directory / n
        for n in names
        if n.startswith(PREFIX) and n.endswith(".lock") and n[: -len(".lock")] not in known
    ]
    return Listing(directory, entries, temps, locks)


def _info(entry: Entry) -> EntryInfo:
    record = read_sidecar(entry)
    sizes = [_stat(p) for p in (entry.npy, entry.sidecar)]
    size = sum(st.st_size for st in sizes if st is not None)
    if record is None:
        return EntryInfo(entry, None, size, "incomplete: no record of its sources")
    for source in record["sources"]:
        change = source.change()
        if change:
            return EntryInfo(entry, record, size, f"source {change}: {source.path}")
    if not npy_complete(entry.npy, (record["rows"], record["cols"]), record["dtype"]):
        return EntryInfo(entry, record, size, "incomplete: data missing or truncated")
    return EntryInfo(entry, record, size, None)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def remove_entry(entry: Entry) -> bool:
    """Removes `entry` unless a process holds its lock (building it, or
    scoring from it); returns whether it did."""
    with try_hold(entry.lock) as free:
        if not free:
            return False
        # The record first: without it the data is never used.
        for path in (entry.sidecar, entry.npy):
            _unlink(path)
        remove_held(entry.lock)
    return True


@dataclass(frozen=True)
class Cleared:
    """What `clear` did."""

    #: (file name, bytes) of each entry or leftover temporary file removed.
    removed: list[tuple[str, int]] = field(default_factory=list)
    #: Names of entries or temporary files left because they are in use.
    skipped: list[str] = field(default_factory=list)


def clear(directory: Path, *, stale_only: bool = False) -> Cleared:
    """Removes every entry of `directory` (only the stale ones with
    `stale_only`), temporary files older than TEMP_MAX_AGE and lock files
    with no entry, skipping whatever a running process holds."""
    listing = scan(directory)
    cleared = Cleared()
    for info in listing.entries:
        if stale_only and not info.stale:
            continue
        if remove_entry(info.entry):
            cleared.removed.append((info.entry.npy.name, info.bytes))
        else:
            cleared.skipped.append(info.entry.npy.name)
    for temp in listing.temps:
        if temp.age_seconds < TEMP_MAX_AGE:
            continue
        entry = temp.entry
        with try_hold(entry.lock) as free:
            if not free:  # a long build still running
                cleared.skipped.append(temp.path.name)
                continue
            _unlink(temp.path)
            cleared.removed.append((temp.path.name, temp.bytes))
            if not entry.npy.exists() and not entry.sidecar.exists():
                remove_held(entry.lock)
    for lock in listing.locks:
        with try_hold(lock) as free:
            if free:
                remove_held(lock)
    return cleared


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def check_cache_dir(directory: Path, cache_dir: PathLike | None, *, create: bool) -> None:
    """Refuses a cache directory that is a file, or (with `create`) that
    cannot be created, in one line that says where the directory came
    from (`cache_dir`, $ZCORE_FAST_CACHE_DIR or the default) and what to
    do; without this the user gets "[Errno 17] File exists" from deep in
    a build. Raises NotADirectoryError, or the OSError of mkdir reworded."""
    if cache_dir is not None:
        origin = "given as --cache-dir / cache_dir="
        fix = "give a directory (it is created if missing)"
    elif os.environ.get("ZCORE_FAST_CACHE_DIR"):
        origin = "from $ZCORE_FAST_CACHE_DIR"
        fix = "set ZCORE_FAST_CACHE_DIR to a directory (it is created if missing)"
    else:
        origin = "the default"
        fix = "set ZCORE_FAST_CACHE_DIR or pass --cache-dir (API: cache_dir=) to use another"
    fix += ", or pass --cache never (API: cache=False)"
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(
            f"column cache directory {directory} ({origin}) is a file, not a directory; {fix}"
        )
    if not create:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = type(e)(
            f"column cache directory {directory} ({origin}) cannot be created: "
            f"{e.strerror or e}; {fix}"
        )
        err.errno = e.errno
        raise err from None
