"""What is in a column cache directory: entry names (keys), sidecars, and
whether an entry still matches its sources.

An entry is `columns-<16 hex>.npy` (the dimension-major copy, a standard
Fortran-order .npy) with a sidecar `columns-<16 hex>.json` recording its
sources, and a lock file `columns-<16 hex>.lock` (lock.py). The key
hashes, for each source in order, its real path, size, mtime (ns), inode
and the sha256 of its .npy header, so a changed source gets a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zcore_fast.io import atomic_write
from zcore_fast.npyfile import NpyHeader, read_header

#: Bumped when the cache layout changes, so old entries are never read.
FORMAT = 1
PREFIX = "columns-"


@dataclass(frozen=True)
class SourceStat:
    """A source file as it was when its entry was keyed."""

    path: str
    size: int
    mtime_ns: int
    ino: int
    header_sha256: str

    @classmethod
    def of(cls, path: str) -> tuple[SourceStat, NpyHeader]:
        """The stat of the .npy at `path` and its header. Raises OSError or
        ValueError for a missing or non-.npy file."""
        real = os.path.realpath(path)
        header = read_header(real)
        st = os.stat(real)
        digest = hashlib.sha256(header.raw).hexdigest()
        return cls(real, st.st_size, st.st_mtime_ns, st.st_ino, digest), header

    def change(self) -> str | None:
        """Why the file no longer matches this record ("vanished",
        "changed"), or None when it still does. The header is not reread:
        size, mtime and inode already change when a file is rewritten."""
        try:
            st = os.stat(self.path)
        except OSError:
            return "vanished"
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (self.size, self.mtime_ns, self.ino):
            return "changed"
        return None


@dataclass(frozen=True)
class Entry:
    """One cache entry's files in `directory`."""

    directory: Path
    name: str  # columns-<16 hex>

    @property
    def npy(self) -> Path:
        """The dimension-major copy."""
        return self.directory / f"{self.name}.npy"

    @property
    def sidecar(self) -> Path:
        """The JSON record of the sources."""
        return self.directory / f"{self.name}.json"

    @property
    def lock(self) -> Path:
        """The lock file (lock.py)."""
        return self.directory / f"{self.name}.lock"

    def temp_path(self) -> Path:
        """A fresh temporary name for building this entry: hidden, unique
        per process and call, and tied to the entry so `clear` can tell
        whose it is."""
        token = hashlib.sha256(os.urandom(8)).hexdigest()[:8]
        return self.directory / f".{self.name}.npy.{os.getpid()}.{token}.tmp"


def entry_for(directory: Path, sources: Sequence[SourceStat], dtype: str) -> Entry:
    """The entry that caches `sources` (in this order) as `dtype`."""
    key = json.dumps(
        {"format": FORMAT, "dtype": dtype, "sources": [asdict(s) for s in sources]},
        sort_keys=True,
    )
    return Entry(directory, PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16])


def write_sidecar(
    entry: Entry, sources: Sequence[SourceStat], shape: tuple[int, int], dtype: str
) -> None:
    """Records the sources of a built entry, atomically."""
    text = sidecar_text(sources, shape, dtype, entry.npy.stat().st_size)
    with atomic_write(entry.sidecar, "w", size=len(text.encode())) as handle:
        handle.write(text)


def sidecar_text(
    sources: Sequence[SourceStat], shape: tuple[int, int], dtype: str, nbytes: int
) -> str:
    """The sidecar of an entry of `nbytes` bytes (also how the free-space
    check before a build learns its size: with thousands of shards as
    sources it is megabytes)."""
    record = {
        "format": FORMAT,
        "sources": [asdict(s) for s in sources],
        "rows": shape[0],
        "cols": shape[1],
        "dtype": dtype,
        "bytes": nbytes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return json.dumps(record, indent=1)


def read_sidecar(entry: Entry) -> dict[str, Any] | None:
    """The sidecar's record, or None when missing or unreadable."""
    try:
        text = entry.sidecar.read_bytes()
    except OSError:
        return None
    return parse_sidecar(text)


def parse_sidecar(text: bytes) -> dict[str, Any] | None:
    """The record in a sidecar's bytes, its sources as `SourceStat`s, or
    None unless it is exactly a record this version writes (any other
    content means an incomplete or foreign entry, rebuilt, never trusted).
    No exception escapes (fuzzed: fuzz/python)."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    sources = record.get("sources")
    if not isinstance(sources, list) or not all(_is_source_record(s) for s in sources):
        return None
    if not all(_is_count(record.get(key)) for key in ("rows", "cols", "bytes")):
        return None
    if record.get("dtype") not in ("float16", "float32"):
        return None
    record["sources"] = [SourceStat(**s) for s in sources]
    return record


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0  # type(): a bool is not a count


_SOURCE_FIELDS = {"path": str, "size": int, "mtime_ns": int, "ino": int, "header_sha256": str}


def _is_source_record(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _SOURCE_FIELDS.keys()
        and all(type(value[k]) is t for k, t in _SOURCE_FIELDS.items())
    )


def matches(
    entry: Entry, sources: Sequence[SourceStat], shape: tuple[int, int], dtype: str
) -> bool:
    """Whether `entry` is complete and holds exactly `sources` as they are
    now: the sidecar names them with their current stat, and the .npy is a
    Fortran-order `shape` array of `dtype` with all its bytes."""
    record = read_sidecar(entry)
    if record is None or record["sources"] != list(sources):
        return False
    if (record["rows"], record["cols"], record["dtype"]) != (*shape, dtype):
        return False
    if any(s.change() for s in sources):
        return False
    return npy_complete(entry.npy, shape, dtype)


def npy_complete(path: Path, shape: tuple[int, int], dtype: str) -> bool:
    """Whether `path` is a Fortran-order `shape` .npy of `dtype` whose size
    is its header plus every value (a truncated copy is never used)."""
    try:
        header = read_header(str(path))
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    want = np.dtype(dtype)
    return (
        header.shape == shape
        # One column (or row) is the same bytes in either order.
        and (header.fortran_order or 1 in shape)
        and header.dtype == want
        and size == header.offset + shape[0] * shape[1] * want.itemsize
    )
