"""The output array while it is being filled: a memory-mapped .npy beside the
final path (`emb.npy.partial`), sized for every image, written in chunks,
then cut to the rows actually written and renamed into place atomically."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np

# The one-line "cannot write PATH: why (it needs N bytes, M are free there)"
# message every output of zcore-fast gives.
from zcore_fast.io import _write_error

try:  # advisory lock against two runs writing the same output (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def partial_path(final: Path) -> Path:
    """Where the rows of `final` live until the run completes."""
    return final.with_name(final.name + ".partial")


class PartialArray:
    """An (rows x dim) .npy file being filled, memory-mapped for writing.

    `create=True` makes a new file (sparse: untouched rows take no disk);
    otherwise the existing partial file is reopened and must have the
    expected shape and dtype, or, for a run whose every row is written
    (`finished_rows` given), the shape `finalize(finished_rows)` gives it:
    a kill between that cut and the rename leaves it so.
    """

    def __init__(
        self,
        final: Path,
        rows: int,
        dim: int,
        dtype: np.dtype,
        *,
        create: bool,
        finished_rows: int | None = None,
    ):
        self.final = final
        self.path = partial_path(final)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        if not create and not self.path.exists():
            raise FileNotFoundError(
                f"{self.path}: the partial output is missing, so the run cannot be resumed; "
                "run again without --resume to start over"
            )
        # Lock before touching the file, so a second run cannot truncate it.
        self._lock: int | None = _lock(self.path)
        try:
            self.array = self._open(rows, dim, create, finished_rows)
        except BaseException:
            self.release()
            raise

    def _open(self, rows: int, dim: int, create: bool, finished_rows: int | None) -> np.memmap:
        if create:
            return self._create(rows, dim)
        array = np.lib.format.open_memmap(self.path, mode="r+")
        shapes = {(rows, dim), (finished_rows, dim)}
        if array.shape not in shapes or array.dtype != self.dtype:
            found = f"{array.shape} {array.dtype}"
            del array
            raise ValueError(
                f"{self.path} holds {found}, not ({rows}, {dim}) {self.dtype}; it does not "
                "belong to this run: delete it and its .progress.json to start over"
            )
        return array

    def _create(self, rows: int, dim: int) -> np.memmap:
        """A new file with its disk blocks allocated up front. Rows are
        written through a memory map, and a map write that finds the disk
        full kills the process with SIGBUS, no message, nothing cleaned up;
        so a disk (or file-size limit) that cannot hold the whole array
        fails here, before any image is read, and the file is removed."""
        size = len(_header(rows, dim, self.dtype)) + rows * dim * self.dtype.itemsize
        try:
            array = np.lib.format.open_memmap(
                self.path, mode="w+", dtype=self.dtype, shape=(rows, dim)
            )
            try:
                _reserve(self.path, size)
            except BaseException:
                del array
                raise
        except OSError as e:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            raise _write_error(self.final, e.strerror or str(e), size, e.errno) from None
        return array

    def write(self, row: int, block: np.ndarray) -> None:
        """Writes `block` (n x dim) at rows row..row+n."""
        self.array[row : row + len(block)] = block

    def flush(self) -> None:
        """Makes every written row durable (msync), before the progress
        record may claim it."""
        self.array.flush()

    def finalize(self, rows: int) -> None:
        """Cuts the file to its first `rows` rows (fewer than allocated when
        images were skipped), rewrites the header, syncs, and renames it to the
        final path: readers see the complete file or none."""
        self.flush()
        offset = self.array.offset
        self.close_map()
        header = _header(rows, self.dim, self.dtype)
        with open(self.path, "r+b") as handle:
            if len(header) == offset:
                handle.write(header)
                handle.truncate(offset + rows * self.dim * self.dtype.itemsize)
                handle.flush()
                os.fsync(handle.fileno())
            else:  # pragma: no cover - numpy pads headers so this does not happen
                _rewrite(self.path, offset, rows, self.dim, self.dtype)
        os.replace(self.path, self.final)
        _fsync_dir(self.final.parent)
        self.release()

    def close_map(self) -> None:
        """Unmaps the file (the lock stays held)."""
        mm = getattr(self.array, "_mmap", None)
        del self.array
        if mm is not None:
            mm.close()

    def release(self) -> None:
        """Releases the lock; the object is unusable afterwards."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def close(self) -> None:
        """Flushes, unmaps and unlocks, keeping the partial file for a resume."""
        if hasattr(self, "array"):
            self.flush()
            self.close_map()
        self.release()


def _header(rows: int, dim: int, dtype: np.dtype) -> bytes:
    """The .npy header np.save writes for a (rows, dim) C-order array."""
    buf = io.BytesIO()
    fields = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (rows, dim),
    }
    np.lib.format.write_array_header_1_0(buf, fields)
    return buf.getvalue()


def _rewrite(path: Path, offset: int, rows: int, dim: int, dtype: np.dtype) -> None:
    # Copy into a fresh file when the header length would change.
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(rows, dim))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, data)
        handle.flush()
        os.fsync(handle.fileno())
    del data
    os.replace(tmp, path)


def _reserve(path: Path, size: int) -> None:
    """Allocates `size` bytes of disk for `path` (ENOSPC, EFBIG or EDQUOT
    now rather than SIGBUS later); a no-op where the file system or the
    platform cannot (the file then stays sparse, as before)."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def _lock(path: Path) -> int | None:
    """An exclusive advisory lock on `path` (created if missing), held by the
    returned descriptor; None where the platform has no flock."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BlockingIOError(
            f"{path} is in use by another zcore-fast embed run; wait for it to finish"
        ) from None
    return fd


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is synced.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
