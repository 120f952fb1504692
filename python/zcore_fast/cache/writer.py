"""Writing a dimension-major copy from Python, for inputs the Rust engine
cannot read itself (Parquet parts, row-sharded .npy folders).

The copy is a Fortran-order .npy (the cache's format). Row blocks are
transposed in tiles of a few dimensions and written with positioned writes,
one contiguous run per dimension, so memory holds only the blocks in flight
and the page cache, not the process, holds what was written. `fill` runs
the jobs that produce blocks on a thread pool (NumPy and pyarrow release
the GIL while they copy and decode) and reports progress, and lets Ctrl-C
or a raising callback stop them, from the calling thread.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from zcore_fast import _native

ProgressFn = Callable[[int, int], object]
Job = TypeVar("Job")

#: Bytes per transposed tile: small enough to stay in cache, large enough
#: that each dimension's run is one sizeable write.
TILE_BYTES = 8 << 20


class ColumnFile:
    """An (n, d) Fortran-order .npy of `dtype` being written at `path`."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.n, self.d = shape
        self.dtype = np.dtype(dtype)
        header = npy_header(shape, self.dtype)
        self.offset = len(header)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _pwrite_all(self.fd, memoryview(header), 0)
            os.ftruncate(self.fd, self.offset + self.n * self.d * self.dtype.itemsize)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, row: int, block: np.ndarray, col: int = 0) -> None:
        """Writes `block` (rows x dims, any float dtype or order) at rows
        row.. and columns col.. of the copy, converted to its dtype."""
        rows = len(block)
        if rows == 0:
            return
        size = self.dtype.itemsize
        # The Rust copy moves bits: float16 as uint16, float32 as uint32.
        bits = np.ascontiguousarray(block, dtype=self.dtype).view(f"u{size}")
        dims = max(1, min(bits.shape[1], TILE_BYTES // (rows * size)))
        tile = np.empty((dims, rows), dtype=bits.dtype)
        for d0 in range(0, bits.shape[1], dims):
            k = min(dims, bits.shape[1] - d0)
            _native.rows_to_columns(bits, d0, tile[:k])
            for i in range(k):
                at = self.offset + ((col + d0 + i) * self.n + row) * size
                _pwrite_all(self.fd, memoryview(tile[i]).cast("B"), at)

    def close(self) -> None:
        """Closes the file (the caller fsyncs and renames it)."""
        os.close(self.fd)

    def __enter__(self) -> ColumnFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fill(
    jobs: Sequence[Job],
    run: Callable[[Job, threading.Event, Callable[[int], None]], None],
    *,
    threads: int,
    total: int,
    progress: ProgressFn | None,
) -> None:
    """Runs `run(job, stop, add_rows)` for every job on up to `threads`
    threads. Each job returns early once `stop` is set and calls
    add_rows(k) as it writes rows. Progress (rows, total) is reported from
    the calling thread every 50 ms; the first error (or Ctrl-C, or a raise
    from `progress`) sets `stop`, waits for the jobs running, and
    propagates."""
    stop = threading.Event()
    lock = threading.Lock()
    done = [0]

    def add(rows: int) -> None:
        with lock:
            done[0] += rows

    def report() -> None:
        if progress is not None:
            with lock:
                now = done[0]
            progress(now, total)

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="zcore-columns") as pool:
        futures = [pool.submit(run, job, stop, add) for job in jobs]
        try:
            pending = set(futures)
            while pending:
                # Short waits: progress, Ctrl-C and a raising callback are
                # all handled here, on the calling thread.
                finished, pending = wait(pending, timeout=0.05, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()
                report()
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise


def npy_header(shape: tuple[int, int], dtype: np.dtype) -> bytes:
    """A version 1.0 .npy header of a Fortran-order array (NumPy pads it to
    a multiple of 64 bytes, so the data is aligned)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": True, "shape": shape}
    )
    return buf.getvalue()


def _pwrite_all(fd: int, data: memoryview, at: int) -> None:
    while data:
        done = os.pwrite(fd, data, at)
        data, at = data[done:], at + done
