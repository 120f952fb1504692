"""Loading and checking what evaluation and plots read: embeddings, labels,
scores and coreset indices (arrays or files)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from zcore_fast.integrations.tables import needs_resolving, resolve
from zcore_fast.io import Embeddings, PathLike, as_sources
from zcore_fast.npyfile import open_npy

#: Class labels: an array or sequence (ints or strings), or a .npy path.
Labels = Union[np.ndarray, Sequence[Any], PathLike]
#: One value per row: an array or a .npy path.
Vector = Union[np.ndarray, Sequence[float], PathLike]


def _is_path(obj: object) -> bool:
    return isinstance(obj, (str, bytes, os.PathLike))


def load_npy(path: PathLike, what: str) -> np.ndarray:
    """The .npy array at `path`, memory-mapped, with errors that name the
    file and what it should hold (the header is checked first: npyfile.py)."""
    p = Path(os.fsdecode(path))
    return open_npy(str(p), name=f"{what} file {p}", what=what)


def load_matrix(
    embeddings: Embeddings, name: str = "embeddings", rows: np.ndarray | None = None
) -> np.ndarray:
    """The embeddings (or only `rows` of them) in memory as one float32
    N x D array, several sources concatenated along D; rows with NaN or Inf
    are refused by number.

    In memory because a probe reads every row many times; files are
    memory-mapped first, so taking `rows` of a huge file reads only those.
    """
    if needs_resolving(embeddings):  # row shards, Parquet: in memory, as a probe needs
        with resolve(embeddings, cache="never") as pool:
            return load_matrix(pool.embeddings, name, rows)
    parts = []
    for src in as_sources(embeddings):
        arr = load_npy(src, name) if isinstance(src, str) else src
        if arr.ndim != 2:
            raise ValueError(f"{name}: shape {arr.shape}; expected a 2-D array (rows = examples)")
        parts.append(arr)
    counts = sorted({p.shape[0] for p in parts})
    if len(counts) > 1:
        raise ValueError(f"{name}: the arrays have different row counts {counts}")
    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    x = np.hstack([np.asarray(take(p), dtype=np.float32) for p in parts])
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        ids = bad if rows is None else rows[bad]
        shown = ", ".join(str(i) for i in ids[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"{name}: {bad.size} rows contain NaN or Inf (rows {shown}); fix or drop them"
        )
    return x


def row_count(embeddings: Embeddings, name: str = "embeddings") -> int:
    """Rows of the embeddings, from array shapes or .npy headers."""
    if needs_resolving(embeddings):
        with resolve(embeddings, cache="never") as pool:
            return row_count(pool.embeddings, name)
    shapes = [
        (load_npy(src, name) if isinstance(src, str) else src).shape
        for src in as_sources(embeddings)
    ]
    for shape in shapes:
        if len(shape) != 2:
            raise ValueError(f"{name}: shape {shape}; expected a 2-D array (rows = examples)")
    if sum(shape[1] for shape in shapes) == 0:
        raise ValueError(f"{name} have 0 dimensions; each row needs at least one value")
    return int(shapes[0][0])


def load_labels(labels: Labels, n: int, name: str = "embeddings") -> np.ndarray:
    """Class labels as a 1-D array of ints or strings, one per row of `name`."""
    y = np.asarray(load_npy(labels, "labels") if _is_path(labels) else labels)  # type: ignore[arg-type]
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)  # a column vector saved by another tool
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per row), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(
            f"labels have {y.shape[0]} entries but {name} have {n} rows; give one label per "
            "row, in the same order"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(
                "labels are floats that are not whole numbers (or NaN); class labels must be "
                "integers or strings"
            )
        return y.astype(np.int64)
    if y.dtype.kind == "O":  # e.g. from pandas: compare as strings
        return y.astype(str)
    if y.dtype.kind not in "iuUSb":
        raise TypeError(f"labels have dtype {y.dtype}; use integers or strings")
    return np.array(y)


def load_scores(scores: Vector, n: int) -> np.ndarray:
    """One finite float score per row (float64)."""
    s = np.asarray(load_npy(scores, "scores") if _is_path(scores) else scores)  # type: ignore[arg-type]
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(
            f"scores have shape {s.shape} but the embeddings have {n} rows; give one score per "
            "row (e.g. from `zcore-fast score`)"
        )
    if s.dtype.kind not in "iuf":
        raise TypeError(
            f"scores have dtype {s.dtype}; give one number per row (e.g. from `zcore-fast score`)"
        )
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    return s


def load_indices(coreset: Vector, n: int) -> np.ndarray:
    """Coreset row indices (int64, unique) from an array or a file in any
    format `zcore-fast select` writes: .npy, .txt (one a line) or .csv
    (first column `index`)."""
    if _is_path(coreset):
        path = Path(os.fsdecode(coreset))  # type: ignore[arg-type]
        suffix = path.suffix.lower()
        if suffix == ".npy":
            idx = np.asarray(load_npy(path, "coreset"))
        elif suffix in (".txt", ".csv"):
            if not path.exists():
                raise FileNotFoundError(f"coreset file {path}: no such file; check the path")
            idx = _read_index_text(path, csv=suffix == ".csv")
        else:
            raise ValueError(f"coreset file {path}: use .npy, .txt or .csv (as select writes)")
    else:
        idx = np.asarray(coreset)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(f"coreset must be a 1-D array of row indices, got {idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(
            f"coreset indices must be in [0, {n}) for {n} rows; got {idx.min()}..{idx.max()} "
            "(was it selected from other embeddings?)"
        )
    return np.unique(idx)


def _read_index_text(path: Path, *, csv: bool) -> np.ndarray:
    lines = path.read_text().split()
    if csv and lines and not lines[0].split(",")[0].strip().lstrip("-").isdigit():
        lines = lines[1:]  # header
    try:
        return np.array([int(line.split(",")[0]) for line in lines], dtype=np.int64)
    except ValueError:
        raise ValueError(f"coreset file {path}: expected one integer row index a line") from None
