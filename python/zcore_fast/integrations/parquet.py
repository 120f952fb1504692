"""Parquet embeddings: one file or a folder of parts, streamed by row group.

A pool is the parts in sorted-name order (`part-00000.parquet`, ...),
concatenated along rows. Every part must hold the embedding column with
the same value type and length D; errors name the part and the row.

The Rust engine wants the pool dimension-major. `write_columns` streams
the row groups straight into that layout (cache/writer.py): a few batches
are decoded at a time, on `threads` threads, so memory stays bounded by
the batches in flight whatever the table's size.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from zcore_fast.cache.entries import SourceStat
from zcore_fast.cache.writer import ColumnFile, fill
from zcore_fast.integrations.arrow import (
    check_embedding_type,
    concat_matrix,
    ids_array,
    list_width,
    pick_column,
    to_matrix,
)
from zcore_fast.integrations.parquet_pages import (
    Chunk,
    UnsupportedPageError,
    chunk_of,
    decode_chunk,
)
from zcore_fast.threads import available_threads

#: Rows per batch taken from a decoded row group, checked and transposed
#: into the copy (about 40 MB at D = 1,280 float16).
BATCH_ROWS = 16_384
#: Read-ahead of each Parquet reader (pyarrow's buffered stream; with
#: pre-buffering off the compressed column chunk is not held whole).
STREAM_BUFFER = 1 << 20
#: Row groups decoded at once are capped so that their decoded size stays
#: under this: pyarrow decodes a whole row group before handing out its
#: batches, so each reader in flight holds one (measured: 239 MB of
#: pyarrow's pool for a 256 MB row group).
MEMORY_BUDGET = 600 << 20
#: Decode row groups with the engine's page decoder where it takes them
#: (parquet_pages.py); False reads every row group with pyarrow (the
#: benchmark's reference).
PAGE_DECODER = True
#: File suffixes read as Parquet.
SUFFIXES = (".parquet", ".pq")

ProgressFn = Callable[[int, int], object]


class RowSink(Protocol):
    """Where row blocks go: the column cache's file, or a matrix."""

    def write(self, row: int, block: np.ndarray) -> None: ...


class _Matrix:
    """An (n, d) matrix in memory as a RowSink (row blocks of other
    threads land in their own rows)."""

    def __init__(self, n: int, d: int, dtype: np.dtype[Any]) -> None:
        self.array = np.empty((n, d), dtype=dtype)

    def write(self, row: int, block: np.ndarray) -> None:
        self.array[row : row + len(block)] = block


def import_pyarrow() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or an ImportError that says what to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading Parquet needs pyarrow: pip install 'zcore-fast[parquet]'"
        ) from None
    return pa, pq


def is_parquet_path(item: object) -> bool:
    """Whether `item` names a Parquet file or a folder holding Parquet parts."""
    if not isinstance(item, (str, os.PathLike)):
        return False
    path = Path(os.fspath(item))
    if path.suffix.lower() in SUFFIXES:
        return True
    return path.is_dir() and any(_parts_in(path))


def _parts_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


@dataclass(frozen=True)
class ParquetPool:
    """A Parquet pool: its parts, embedding column, D, dtype and row counts."""

    path: str
    parts: tuple[str, ...]
    column: str
    id_column: str | None
    rows: tuple[int, ...]
    d: int
    dtype: np.dtype

    @property
    def n(self) -> int:
        """Rows in all parts."""
        return sum(self.rows)

    @property
    def offsets(self) -> list[int]:
        """The global row number of each part's first row."""
        return [sum(self.rows[:i]) for i in range(len(self.rows))]

    @property
    def cache_dtype(self) -> str:
        """The dtype of the dimension-major copy: float16 stays float16, the
        rest become float32 (the engine computes in float32)."""
        return "float16" if self.dtype == np.float16 else "float32"

    @classmethod
    def open(cls, path: object, column: str | None, id_column: str | None) -> ParquetPool:
        """Checks the parts' schemas and finds D (from the first row)."""
        pa, pq = import_pyarrow()
        root = Path(os.fspath(path))  # type: ignore[call-overload]
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder; check the path")
        parts = _parts_in(root) if root.is_dir() else [root]
        if not parts:
            raise FileNotFoundError(f"{root}: no .parquet files in this folder")
        files, rows = [], []
        chosen: str | None = None
        dtype = None
        for part in parts:
            meta = _metadata(pq, part)
            schema = meta.schema.to_arrow_schema()
            name = pick_column(pa, schema, column if column is not None else chosen, str(part))
            if chosen is None:
                chosen = name
            t = check_embedding_type(pa, schema.field(name).type, name, str(part))
            if dtype is None:
                dtype = t
            elif t != dtype:
                raise TypeError(
                    f"{part}: column {name!r} holds {t} values, earlier parts hold {dtype}; "
                    "every part must have the same embedding type"
                )
            if id_column is not None and id_column not in schema.names:
                raise ValueError(
                    f"{part} has no id column {id_column!r}; its columns are "
                    f"{', '.join(map(repr, schema.names))}"
                )
            files.append(str(part))
            rows.append(int(meta.num_rows))
        assert chosen is not None and dtype is not None
        d = _first_width(pa, pq, files, rows, chosen)
        return cls(str(root), tuple(files), chosen, id_column, tuple(rows), d, dtype)

    def stats(self) -> list[SourceStat]:
        """One record per part for the column cache's key: its stat, and a
        digest of its footer (schema and row groups) and of the column read,
        so another column of the same file is another entry."""
        out = []
        for part in self.parts:
            real = os.path.realpath(part)
            st = os.stat(real)
            digest = hashlib.sha256(
                f"parquet\0{self.column}\0".encode() + _footer(real)
            ).hexdigest()
            out.append(SourceStat(real, st.st_size, st.st_mtime_ns, st.st_ino, digest))
        return out

    def read_ids(self) -> np.ndarray | None:
        """The id column of every part, in pool order (None without one)."""
        if self.id_column is None:
            return None
        pa, pq = import_pyarrow()
        arrays = []
        for part in self.parts:
            table = pq.read_table(part, columns=[self.id_column])
            arrays.append(ids_array(pa, table.column(0), self.id_column, part))
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def read_matrix(self, threads: int | None = None) -> np.ndarray:
        """The whole pool in memory as an (N, D) matrix (small pools); row
        groups decoded on `threads` threads (default: every core) as
        `write_columns` does."""
        pa, pq = import_pyarrow()
        if PAGE_DECODER and self.dtype != np.float64:
            rows = _Matrix(self.n, self.d, self.dtype)
            self._fill(pa, pq, rows, threads or available_threads(), None)
            return rows.array
        matrices = []
        for part in self.parts:
            col = pq.read_table(part, columns=[self.column]).column(0)
            matrices.append(concat_matrix(pa, col.chunks, self.column, part))
        return matrices[0] if len(matrices) == 1 else np.concatenate(matrices)

    def write_columns(
        self, path: Path, threads: int, progress: ProgressFn | None = None
    ) -> tuple[int, int, str]:
        """Writes the pool dimension-major to `path` as a Fortran-order .npy
        of `cache_dtype`; returns (rows, cols, dtype) as `_native.build_cache`
        does. Row groups are decoded on up to `threads` threads."""
        pa, pq = import_pyarrow()
        n, d, dtype = self.n, self.d, np.dtype(self.cache_dtype)
        with ColumnFile(path, (n, d), dtype) as out:
            self._fill(pa, pq, out, threads, progress)
        return n, d, str(dtype)

    def _fill(
        self, pa: Any, pq: Any, out: RowSink, threads: int, progress: ProgressFn | None
    ) -> None:
        """Writes every row group into `out` on up to `threads` threads:
        through the engine's page decoder where it takes the row group,
        else pyarrow's reader."""
        # (part, row group, its first row in the pool, the part's first row)
        jobs = [
            (part, group, first, start)
            for part, start in zip(self.parts, self.offsets)
            for group, first in _row_groups(pq, part, start)
        ]
        readers = _readers(pa, pq, self, threads)
        started = [0]
        lock = threading.Lock()

        def run(
            job: tuple[str, int, int, int], stop: threading.Event, add: Callable[[int], None]
        ) -> None:
            part, group, row, start = job
            with lock:
                started[0] += 1
                # Row groups left (this one too) at most half the readers
                # (one row group on two, or the last few): a row group's
                # stages overlap, so the idle cores help. Its two busy
                # threads (pages, writes) stay within `threads`; the third
                # mostly waits.
                overlap = 2 * (len(jobs) - started[0] + 1) <= readers
            if self._decode_pages(pa, pq, out, job, stop, add, overlap):
                return
            # A buffered stream reads the column chunk piece by piece
            # instead of whole, so memory is bounded by the batch.
            reader = pq.ParquetFile(part, buffer_size=STREAM_BUFFER, pre_buffer=False)
            # use_threads=False: the readers already run in parallel, and
            # pyarrow's own threads on top made the decode of one row group
            # 1.7x slower (1.12 s against 0.67 s, 100,000 x 1,280 float16
            # on 2 cores).
            for batch in reader.iter_batches(
                batch_size=BATCH_ROWS,
                row_groups=[group],
                columns=[self.column],
                use_threads=False,
            ):
                if stop.is_set():
                    return
                # Errors count rows from the part's first, as a user
                # opening that part would.
                block = to_matrix(pa, batch.column(0), self.d, self.column, part, row - start)
                out.write(row, block)
                row += len(block)
                add(len(block))

        fill(jobs, run, threads=readers, total=self.n, progress=progress)

    def _decode_pages(
        self,
        pa: Any,
        pq: Any,
        out: RowSink,
        job: tuple[str, int, int, int],
        stop: threading.Event,
        add: Callable[[int], None],
        overlap: bool,
    ) -> bool:
        """Writes row group `job` through the engine's page decoder
        (parquet_pages.py, its stages on threads of their own with
        `overlap`); False, with nothing counted, where that decoder does not
        take it."""
        if not PAGE_DECODER:
            return False
        part, group, row, _ = job
        chunk = _page_chunk(pa, pq.ParquetFile(part).metadata, group, self)
        if chunk is None:
            return False
        value_type = np.float16 if chunk.bits.itemsize == 2 else np.float32
        written = [0]  # by one thread at a time: decode_chunk's writer, or this one

        def emit(first: int, bits: np.ndarray) -> None:
            out.write(row + first, bits.view(value_type))
            written[0] += len(bits)
            add(len(bits))

        fd = os.open(part, os.O_RDONLY)
        try:
            decode_chunk(fd, chunk, self.d, BATCH_ROWS, emit, stop.is_set, overlap)
        except UnsupportedPageError:
            add(-written[0])
            return False
        finally:
            os.close(fd)
        return True


def _readers(pa: Any, pq: Any, pool: ParquetPool, threads: int) -> int:
    """Threads decoding row groups at once: `threads`, fewer when that many
    of the largest row group pyarrow would decode would not fit
    MEMORY_BUDGET, at least one. A row group the page decoder takes holds
    only two blocks of BATCH_ROWS rows in memory, whatever its size: one
    whose chunk it accepts (type, codec, encodings) and whose value count
    is rows x D. It may still refuse one part-way (a damaged page, rows of
    another length with the same count), and pyarrow then holds that row
    group, mostly only to name the row of the error."""
    largest = 0
    for part in pool.parts:
        meta = pq.ParquetFile(part).metadata
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]
        columns = [i for i, name in enumerate(names) if name.split(".")[0] == pool.column]
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            size = sum(group.column(i).total_uncompressed_size for i in columns)
            chunk = _page_chunk(pa, meta, g, pool) if PAGE_DECODER else None
            if chunk is not None:
                # Two blocks when decode_chunk overlaps its stages.
                size = min(size, 2 * BATCH_ROWS * pool.d * chunk.bits.itemsize)
            largest = max(largest, size)
    return max(1, min(threads, MEMORY_BUDGET // max(1, largest)))


def _page_chunk(pa: Any, meta: Any, group: int, pool: ParquetPool) -> Chunk | None:
    """The embedding column's chunk in row group `group` when the page
    decoder takes it: a chunk it accepts whose value count is rows x D
    (else nulls or rows of another length, for pyarrow to name); else
    None."""
    try:
        chunk = chunk_of(pa, meta, group, pool.column)
    except UnsupportedPageError:
        return None
    return chunk if chunk.values == meta.row_group(group).num_rows * pool.d else None


def _row_groups(pq: Any, part: str, first: int) -> list[tuple[int, int]]:
    """(row group, global first row) of every row group of `part`."""
    meta = pq.ParquetFile(part).metadata
    out = []
    for g in range(meta.num_row_groups):
        out.append((g, first))
        first += meta.row_group(g).num_rows
    return out


def _metadata(pq: Any, part: Path) -> Any:
    try:
        return pq.ParquetFile(part).metadata
    except OSError as e:
        raise ValueError(f"{part}: not a readable Parquet file ({e})") from None
    except Exception as e:  # pyarrow raises ArrowInvalid for a damaged footer
        raise ValueError(f"{part}: not a readable Parquet file ({e})") from None


def _footer(path: str) -> bytes:
    """The Parquet footer (schema, row groups, statistics) of `path`."""
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        length = int.from_bytes(tail[:4], "little")
        f.seek(-8 - length, os.SEEK_END)
        return f.read(length)


def _first_width(pa: Any, pq: Any, parts: Sequence[str], rows: Sequence[int], column: str) -> int:
    """D, from the first part with a non-null row in its first batch."""
    for part, count in zip(parts, rows):
        if count == 0:
            continue
        # Unbuffered: pre-buffering reads the whole column chunk first, 2.5
        # GB for a row group of 10^6 x 1,280 float16 (seconds, for one row).
        reader = pq.ParquetFile(part, buffer_size=STREAM_BUFFER, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=1024, columns=[column]):
            d = list_width(pa, batch.column(0), column, part)
            if d is not None:
                if d == 0:
                    raise ValueError(f"{part}: column {column!r} holds empty lists")
                return d
            break
    if sum(rows) == 0:
        raise ValueError(f"{parts[0]}: the table has no rows; there is nothing to select from")
    raise ValueError(
        f"{parts[0]}: the first rows of column {column!r} are null; drop or fill the rows "
        "without an embedding first"
    )
