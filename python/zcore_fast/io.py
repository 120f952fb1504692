"""Inputs and outputs: embedding sources, and atomic writes of results."""

from __future__ import annotations

import csv
import errno as _errno
import io as io_module
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
EmbeddingSource = Union[PathLike, np.ndarray]
Embeddings = Union[EmbeddingSource, Sequence[EmbeddingSource]]

_FLOATS = (np.float16, np.float32, np.float64)


def _is_source(obj: object) -> bool:
    return isinstance(obj, (str, os.PathLike, np.ndarray))


def as_sources(embeddings: Embeddings) -> list[str | np.ndarray]:
    """Normalises `embeddings` to a list of paths (str) and 2-D float arrays.

    Accepts one array, np.memmap or path, or a list of them (concatenated
    along dimensions). Arrays are passed to the engine without copying when
    they are float16/32/64, contiguous and little-endian; integer arrays are
    cast to float32.
    """
    if _is_source(embeddings):
        items = [embeddings]
    elif isinstance(embeddings, (list, tuple)):
        items = list(embeddings)
    else:
        raise TypeError(
            f"embeddings is a {type(embeddings).__name__}; pass a NumPy array, a .npy path, "
            "or a list of them"
        )
    if not items:
        raise ValueError("no embeddings given: pass an array, a .npy path, or a list of them")
    return [_as_source(item, i) for i, item in enumerate(items)]


def _as_source(item: object, index: int) -> str | np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file; check the path")
        return path
    if not isinstance(item, np.ndarray):
        raise TypeError(
            f"embeddings item {index} is a {type(item).__name__}; expected a NumPy array or a "
            ".npy path"
        )
    arr = item
    if arr.ndim != 2:
        raise ValueError(
            f"array {index} has shape {arr.shape}; expected a 2-D array (rows = examples, "
            "columns = embedding dimensions)"
        )
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float32)
    elif arr.dtype.type not in _FLOATS:
        raise TypeError(
            f"array {index} has dtype {arr.dtype}; embeddings must be float16, float32 or "
            "float64 (cast with arr.astype(np.float32))"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    return arr


def check_output_path(output: PathLike, inputs: Sequence[str | np.ndarray] = ()) -> Path:
    """Refuses an output whose directory is missing or that would overwrite an input."""
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{out}: directory {parent} does not exist; create it first")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a directory; give a file name")
    for item in inputs:
        if isinstance(item, str) and os.path.exists(item) and out.exists():
            if os.path.samefile(item, out):
                raise ValueError(f"output {out} is also an input; choose another output path")
    return out


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb", size: int | None = None) -> Iterator[IO]:
    """Writes to a temporary file beside `path` and renames it into place on
    success, so readers never see a partial file and a failure leaves none.

    The file and, after the rename, its directory are fsynced: once this
    returns the output survives a power cut. `size`, the bytes about to be
    written when known, lets a full disk be refused before writing and
    named in the error. Any I/O failure (full disk, file-size limit,
    read-only directory) becomes one OSError that names the path, the space
    needed and the space free.
    """
    # Through a symlink: write beside the file it names (maybe on another
    # file system), so the rename replaces that file, not the link.
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    _remove_orphans(target)
    if size is not None:
        free = _free_bytes(parent)
        if free is not None and free < size:
            raise _write_error(target, "not enough space on its file system", size)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as e:
        raise _write_error(target, e.strerror or str(e), size, e.errno) from None
    try:
        try:
            # Closing flushes what is buffered, so it can fail too: inside.
            with os.fdopen(fd, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as e:
            raise _write_error(target, e.strerror or str(e), size, e.errno) from None
        # mkstemp creates 0600; give the output the permissions a plain
        # open() would have (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
        _fsync_directory(parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _write_error(target: Path, why: str, size: int | None, errno: int | None = None) -> OSError:
    """One line: what could not be written, why, and the space it needs."""
    parent = target.parent if str(target.parent) else Path(".")
    free = _free_bytes(parent)
    need = f"it needs {size:,} bytes" if size is not None else "it needs more space"
    room = f", {free:,} are free there" if free is not None else ""
    if errno in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
        text = f"{why}; nothing was written; choose a directory you can write to"
    else:
        text = f"{why} ({need}{room}); nothing was written; free some space or write it elsewhere"
    err = OSError(f"cannot write {target}: {text}")
    err.errno = errno
    return err


def _remove_orphans(target: Path) -> None:
    """Removes temporaries of `target` left by writers that died (kill -9,
    power loss): `.{name}.{pid}.*.tmp` whose process no longer exists. A
    live writer's temporary (its pid alive) is left alone."""
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent if str(target.parent) else ".")
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(target.parent / name)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (on this host). Outside POSIX always
    True: there is no harmless probe (os.kill(pid, 0) terminates on Windows)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in `directory` durable: without it a power cut after
    os.replace may bring back the old name (or none) although the data was
    synced. Skipped where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_array(path: PathLike, array: np.ndarray) -> None:
    """Saves `array` as .npy atomically."""
    with atomic_write(path, size=array.nbytes + 128) as handle:  # + the .npy header
        np.save(handle, array)


def save_selection(
    path: PathLike,
    indices: np.ndarray,
    scores: np.ndarray | None,
    ids: np.ndarray | None = None,
) -> None:
    """Saves selected indices in the format the extension names.

    .npy: int64 indices; .txt: one index a line; .csv: index,score,rank
    (rank = position in `indices`, 1 first: the highest score for ZCore; the
    score cell is empty when `scores` is None, e.g. for random); .parquet:
    the same columns (needs pyarrow). With `ids` (one per row of the pool,
    from a table's id column) .csv and .parquet start with an id column.
    Written atomically.
    """
    suffix = Path(path).suffix.lower()
    indices = np.asarray(indices, dtype=np.int64)
    if suffix == ".npy":
        save_array(path, indices)
    elif suffix in (".txt", ".csv"):
        text = _selection_text(suffix, indices, scores, ids).encode()
        with atomic_write(path, size=len(text)) as handle:
            handle.write(text)
    elif suffix in (".parquet", ".pq"):
        data = _selection_parquet(indices, scores, ids)
        with atomic_write(path, size=len(data)) as handle:
            handle.write(data)
    else:
        raise ValueError(
            f"{path}: unknown output format {suffix or '(none)'}; use .npy, .txt, .csv or .parquet"
        )


def _selection_text(
    suffix: str, indices: np.ndarray, scores: np.ndarray | None, ids: np.ndarray | None
) -> str:
    """The .txt or .csv text of a selection (built first, so its size is
    known before anything is written)."""
    if suffix == ".txt":
        return "".join(f"{i}\n" for i in indices.tolist())
    out = io_module.StringIO()
    rows = csv.writer(out, lineterminator="\n")  # quotes ids holding commas or quotes
    rows.writerow((["id"] if ids is not None else []) + ["index", "score", "rank"])
    picked = indices.tolist()
    values = [""] * len(picked) if scores is None else [f"{s:.9g}" for s in scores[indices]]
    ranks = range(1, len(picked) + 1)
    if ids is None:
        rows.writerows(zip(picked, values, ranks))
    else:
        rows.writerows(zip(ids[indices].tolist(), picked, values, ranks))
    return out.getvalue()


def _selection_parquet(
    indices: np.ndarray, scores: np.ndarray | None, ids: np.ndarray | None
) -> bytes:
    """The selection as Parquet bytes: [id,] index, score (null without
    scores), rank. pyarrow is imported only here, for this output."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "writing .parquet needs pyarrow: pip install 'zcore-fast[parquet]', or write .csv"
        ) from None
    columns: dict[str, object] = {}
    if ids is not None:
        columns["id"] = pa.array(ids[indices].tolist() if ids.dtype == object else ids[indices])
    columns["index"] = pa.array(indices)
    columns["score"] = (
        pa.nulls(len(indices), pa.float32())
        if scores is None
        else pa.array(np.asarray(scores, dtype=np.float32)[indices])
    )
    columns["rank"] = pa.array(np.arange(1, len(indices) + 1, dtype=np.int64))
    sink = io_module.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def example_embeddings(n: int = 5_000, d: int = 64, seed: int = 0) -> np.ndarray:
    """A built-in example pool: clustered Gaussian embeddings with a few dense
    near-duplicate groups, float32 (n x d). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, d)) * 3.0
    sizes = rng.dirichlet(np.ones(12) * 0.7)
    labels = rng.choice(12, size=n, p=sizes)
    x = centres[labels] + rng.normal(size=(n, d))
    dupes = rng.choice(n, size=n // 20, replace=False)
    x[dupes] = x[dupes[0]] + 0.01 * rng.normal(size=(len(dupes), d))
    return x.astype(np.float32)
