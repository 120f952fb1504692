"""Row-block access to embeddings for the NumPy methods (k-means, Moderate,
ELFS, CCS, random).

The Rust engine reads .npy files itself; these methods work on blocks of rows
instead, so files are memory-mapped with NumPy and converted to float32 one
block at a time (never loaded whole, float16 memmaps included). Inputs are
checked with the same rules and messages as the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np

from zcore_fast.io import Embeddings, as_sources
from zcore_fast.npyfile import open_npy, read_header

#: float32 values per block: 64 MB, large enough for BLAS to run at full speed
#: and small enough that a few block-sized temporaries stay cheap.
BLOCK_VALUES = 1 << 24


class Rows:
    """Embeddings as N rows of D float32 values, from one or more parts
    concatenated along dimensions. Read-only; parts may be memmaps."""

    def __init__(
        self,
        parts: Sequence[np.ndarray],
        names: Sequence[str],
        sources: Sequence[str | np.ndarray] = (),
    ) -> None:
        self.parts = list(parts)
        self.names = list(names)
        #: The inputs as `zcore_fast.io.as_sources` gave them (paths stay paths,
        #: so the Rust engine can map files itself).
        self.sources = list(sources) or list(self.parts)
        #: Whether the values were checked for NaN/Inf (one pass, done once).
        self.checked = False
        self.n = int(self.parts[0].shape[0])
        self.d = int(sum(p.shape[1] for p in self.parts))

    @property
    def block_rows(self) -> int:
        """Rows per block: about BLOCK_VALUES float32 values."""
        return max(1, BLOCK_VALUES // max(1, self.d))

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop as a C-contiguous float32 (stop - start, D) array."""
        self.check_intact()
        return self._join([p[start:stop] for p in self.parts])

    def blocks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) over all rows, `rows` (default `block_rows`) at a time."""
        step = rows or self.block_rows
        for start in range(0, self.n, step):
            yield start, self.block(start, min(self.n, start + step))

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows at `index` (any order), float32 (len(index), D).

        Reads in ascending row order (memmaps read sequentially) and returns
        the rows in the order asked."""
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(index, kind="stable")
        out = np.empty((index.size, self.d), dtype=np.float32)
        sorted_index = index[order]
        step = self.block_rows
        for lo in range(0, index.size, step):
            chunk = sorted_index[lo : lo + step]
            self.check_intact()
            out[order[lo : lo + step]] = self._join([p[chunk] for p in self.parts])
        return out

    def dense(self) -> np.ndarray:
        """All rows as one float32 (N, D) array (a view when that is possible)."""
        if len(self.parts) == 1 and self.parts[0].dtype == np.float32:
            self.check_intact()
            return np.ascontiguousarray(self.parts[0])
        return self.block(0, self.n)

    def check_intact(self) -> None:
        """Refuses to read on when a memory-mapped file is now shorter than
        its data: another process truncated or rewrote it in place (numpy.save
        to the same path does). Reading a page past the end of a mapped file
        kills the process with SIGBUS, so this is checked before every read of
        a block (one fstat); a file cut during the read of one block itself is
        not caught. A file replaced by a rename is harmless: the map keeps the
        old one."""
        for part, name in zip(self.parts, self.names):
            mapped = getattr(part, "_mmap", None)
            if mapped is None:
                continue
            try:
                size = mapped.size()  # fstat of the mapped file itself, not of its path
            except (OSError, ValueError):
                continue
            need = int(getattr(part, "offset", 0)) + part.nbytes
            if size < need:
                raise ValueError(
                    f"{name} was truncated while this run was reading it (it now holds "
                    f"{size:,} bytes, its header promises {need:,}); do not rewrite embeddings "
                    "while they are in use (write a new file and rename it into place), then "
                    "run again"
                )

    def _join(self, pieces: list[np.ndarray]) -> np.ndarray:
        if len(pieces) == 1:
            return np.ascontiguousarray(pieces[0], dtype=np.float32)
        out = np.empty((pieces[0].shape[0], self.d), dtype=np.float32)
        col = 0
        for piece in pieces:
            out[:, col : col + piece.shape[1]] = piece
            col += piece.shape[1]
        return out


def resident(rows: Rows, *, max_fraction: float = 0.5) -> Rows:
    """`rows` as one float32 array in memory, when it is not one float32 part
    already and the copy fits in `max_fraction` of the free memory; else
    `rows` itself.

    For methods that pass over the data many times (k-means): converting
    float16 to float32 costs more than the pass's arithmetic (measured at
    N = 10^6, D = 1,280: 13 s per k-means iteration from a float16 memmap,
    3 s from float32), so it is done once, not once per pass.
    """
    if len(rows.parts) == 1 and rows.parts[0].dtype == np.float32:
        return rows
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not on Linux: stay streaming
        return rows
    if rows.n * rows.d * 4 > max_fraction * free:
        return rows
    copy = Rows([rows.dense()], ["float32 copy"], rows.sources)
    copy.checked = rows.checked
    return copy


def open_resident(embeddings: Embeddings | Rows) -> Rows:
    """`open_rows` then `resident`, with the NaN/Inf check done on the float32
    copy when there is one (a float16 input is then converted once, not twice)."""
    return open_rows(resident(open_rows(embeddings, check_finite=False)))


def open_rows(embeddings: Embeddings | Rows, *, check_finite: bool = True) -> Rows:
    """Opens `embeddings` (what `zcore_fast.score` accepts) for row access.

    Files are memory-mapped, never loaded whole. Refuses what the engine
    refuses, with the same messages: missing or non-.npy files, non-float
    dtypes, non-2-D arrays, parts with different row counts, no rows, and
    (with `check_finite`, one pass over the data) NaN/Inf rows by index.
    """
    if isinstance(embeddings, Rows):
        if check_finite and not embeddings.checked:
            _check_finite(embeddings)
            embeddings.checked = True
        return embeddings
    parts, names = [], []
    sources = as_sources(embeddings)
    for i, source in enumerate(sources):
        if isinstance(source, str):
            parts.append(_open_npy(source))
            names.append(source)
        else:
            parts.append(source)
            names.append(f"array {i}")
    first = parts[0]
    for part, name in zip(parts, names):
        if part.shape[0] != first.shape[0]:
            raise ValueError(
                f"row counts differ: {names[0]} has {first.shape[0]} rows but {name} has "
                f"{part.shape[0]}; concatenated embedding files must describe the same "
                "examples in the same order"
            )
    rows = Rows(parts, names, sources)
    if rows.n == 0:
        raise ValueError("embeddings have 0 rows; nothing to select from")
    if rows.d == 0:
        raise ValueError("embeddings have 0 dimensions")
    if check_finite:
        _check_finite(rows)
        rows.checked = True
    return rows


def _open_npy(path: str) -> np.ndarray:
    # The header is checked before NumPy parses it (npyfile.py): a damaged or
    # hostile file gets the engine's one-line refusal, not NumPy's exception.
    header = read_header(path, what="embeddings")
    if header.dtype.type not in (np.float16, np.float32, np.float64):
        raise TypeError(
            f"{path}: dtype {header.dtype.str} is not a float16/float32/float64 array; "
            "embeddings must be floating point (cast with arr.astype('float32'))"
        )
    if len(header.shape) != 2:
        raise ValueError(
            f"{path}: array has shape {header.shape}; expected a 2-D array (rows = examples, "
            "columns = embedding dimensions)"
        )
    return open_npy(path, what="embeddings")


def _check_finite(rows: Rows) -> None:
    bad: list[np.ndarray] = []
    for start, block in rows.blocks():
        # Checked after the float32 conversion: float64 values beyond the
        # float32 range become Inf there, and every method computes in float32.
        rows_bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if rows_bad.size:
            bad.append(rows_bad + start)
    if bad:
        found = np.concatenate(bad)
        shown = ", ".join(str(i) for i in found[:8].tolist())
        more = ", ..." if found.size > 8 else ""
        raise ValueError(
            f"embeddings contain NaN or Inf in {found.size} row(s): {shown}{more}; remove or "
            "repair those rows before scoring"
        )


RowsLike = Union[Embeddings, Rows]
