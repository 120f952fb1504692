"""Row-sharded .npy pools: a folder (or glob) of shards is one pool.

Billion-row embeddings come split by rows: clip-retrieval and LAION write
`img_emb/img_emb_00.npy`, `img_emb_01.npy`, ... A folder or a glob pattern
of .npy files is read as those shards concatenated along rows, in sorted
name order; row numbers in every output are global (shard offset + row).
Several inputs are still concatenated along dimensions, so CLIP shards can
stand beside ResNet shards with the same row counts.

The engine reads one file per input, so a sharded pool becomes either one
array in memory (small pools) or one dimension-major copy in the column
cache, written from the shards by cache/writer.py (`tables.py` decides).
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from zcore_fast.cache.entries import SourceStat
from zcore_fast.cache.writer import ColumnFile, fill
from zcore_fast.io import as_sources
from zcore_fast.npyfile import open_npy, read_header

ProgressFn = Callable[[int, int], object]
#: Rows copied per job: about 64 MB of float32 at D = 256, so a single large
#: shard is still split over every thread.
JOB_ROWS = 1 << 16
_GLOB_CHARS = frozenset("*?[")


def is_glob(item: object) -> bool:
    """Whether `item` is a glob pattern string (not an existing path)."""
    return isinstance(item, str) and bool(_GLOB_CHARS & set(item)) and not os.path.exists(item)


def is_sharded(item: object) -> bool:
    """Whether `item` names row shards: a folder holding .npy files, or a
    glob pattern."""
    if is_glob(item):
        return True
    if not isinstance(item, (str, os.PathLike)):
        return False
    path = Path(os.fspath(item))
    return path.is_dir() and any(p.suffix.lower() == ".npy" for p in path.iterdir())


@dataclass(frozen=True)
class Shards:
    """One input: its .npy shards in order, with their row counts."""

    #: The folder, pattern or file as given.
    name: str
    files: tuple[str, ...]
    rows: tuple[int, ...]
    d: int
    dtype: np.dtype

    @property
    def n(self) -> int:
        """Rows in all shards."""
        return sum(self.rows)

    @property
    def offsets(self) -> list[int]:
        """The global row of each shard's first row."""
        return [sum(self.rows[:i]) for i in range(len(self.rows))]

    def describe(self) -> dict[str, object]:
        """For summaries (`--json`): the input and each shard's first row."""
        return {
            "path": self.name,
            "shards": [
                {"path": f, "rows": r, "first_row": o}
                for f, r, o in zip(self.files, self.rows, self.offsets)
            ],
        }

    def load(self) -> np.ndarray:
        """All shards as one array in memory (their dtype kept)."""
        parts = [open_npy(f, name=f, what="embeddings") for f in self.files]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def open_shards(item: str | os.PathLike[str]) -> Shards:
    """The shards `item` names (a folder, a glob or one .npy file), their
    headers checked; an error naming the shard that differs in D or dtype."""
    name = os.fspath(item)
    if is_glob(name):
        files = sorted(f for f in glob.glob(name) if f.lower().endswith(".npy"))
        if not files:
            raise FileNotFoundError(f"{name}: no .npy files match this pattern")
    elif os.path.isdir(name):
        files = sorted(str(p) for p in Path(name).iterdir() if p.suffix.lower() == ".npy")
        if not files:
            raise FileNotFoundError(f"{name}: no .npy files in this folder")
    else:
        files = [name]
    rows, first = [], None
    for f in files:
        header = read_header(f, name=f)
        if len(header.shape) != 2 or header.dtype.kind != "f" or header.dtype.itemsize > 8:
            raise ValueError(
                f"{f}: a shard must be a 2-D float16/32/64 array (rows x dimensions); this one "
                f"is {header.dtype} of shape {header.shape}"
            )
        if first is None:
            first = header
        elif header.shape[1] != first.shape[1]:
            raise ValueError(
                f"{f} has {header.shape[1]} dimensions, {files[0]} has {first.shape[1]}; every "
                "shard of a pool must have the same dimensions (is it from another model?)"
            )
        elif header.dtype != first.dtype:
            raise ValueError(
                f"{f} holds {header.dtype}, {files[0]} holds {first.dtype}; every shard of a "
                "pool must have the same dtype (convert it with np.save(path, arr.astype(...)))"
            )
        rows.append(int(header.shape[0]))
    assert first is not None
    return Shards(name, tuple(files), tuple(rows), int(first.shape[1]), first.dtype)


def check_rows(inputs: Sequence[Shards | np.ndarray], names: Sequence[str]) -> int:
    """The common row count of inputs concatenated along dimensions."""
    counts = [x.n if isinstance(x, Shards) else int(x.shape[0]) for x in inputs]
    for count, name in zip(counts[1:], names[1:]):
        if count != counts[0]:
            raise ValueError(
                f"{name} has {count:,} rows, {names[0]} has {counts[0]:,}; inputs side by side "
                "(concatenated along dimensions) need the same rows, shard for shard"
            )
    return counts[0]


def stats(inputs: Sequence[Shards | np.ndarray]) -> list[SourceStat]:
    """The column cache's key records: every shard's stat and header, each
    marked with its input's position, so that rows concatenated differ from
    the same files side by side (and from another split into inputs)."""
    out = []
    for i, x in enumerate(inputs):
        assert isinstance(x, Shards), "arrays are never cached"
        for f in x.files:
            stat, _ = SourceStat.of(f)
            mark = hashlib.sha256(f"rows of input {i}\0{stat.header_sha256}".encode())
            out.append(replace(stat, header_sha256=mark.hexdigest()))
    return out


def writer(
    inputs: Sequence[Shards],
) -> Callable[[Path, int, ProgressFn | None], tuple[int, int, str]]:
    """A column cache writer (cache.build.Writer) of `inputs`: each shard is
    memory-mapped and copied in blocks of JOB_ROWS rows, on several threads,
    to its rows (and its input's columns) of the copy."""
    n = inputs[0].n
    d = sum(x.d for x in inputs)
    dtype = np.dtype("float16" if all(x.dtype == np.float16 for x in inputs) else "float32")

    def write(path: Path, threads: int, progress: ProgressFn | None) -> tuple[int, int, str]:
        jobs = []
        col = 0
        for x in inputs:
            for f, start, count in zip(x.files, x.offsets, x.rows):
                for lo in range(0, count, JOB_ROWS):
                    jobs.append((f, start, lo, min(count, lo + JOB_ROWS), col))
            col += x.d
        with ColumnFile(path, (n, d), dtype) as out:

            def run(
                job: tuple[str, int, int, int, int],
                stop: threading.Event,
                add: Callable[[int], None],
            ) -> None:
                f, start, lo, hi, col = job
                if stop.is_set():
                    return
                shard = open_npy(f, name=f, what="embeddings")
                out.write(start + lo, shard[lo:hi], col)
                add(hi - lo)

            # Progress counts rows of every input: total = rows x inputs.
            fill(jobs, run, threads=threads, total=n * len(inputs), progress=progress)
        return n, d, str(dtype)

    return write


def pool_shape(inputs: Sequence[Shards | np.ndarray]) -> tuple[int, int]:
    """(rows, dimensions) of inputs side by side (rows checked by `check_rows`)."""
    first = inputs[0]
    n = first.n if isinstance(first, Shards) else int(first.shape[0])
    return n, sum(x.d if isinstance(x, Shards) else int(x.shape[1]) for x in inputs)


def describe_inputs(inputs: Sequence[Shards | np.ndarray], names: Sequence[str]) -> dict:
    """For summaries (`--json`): every input side by side, with its shards
    and their first rows."""
    return {
        "format": "npy-shards",
        "inputs": [
            x.describe() if isinstance(x, Shards) else {"path": nm} for x, nm in zip(inputs, names)
        ],
    }


def input_names(items: Sequence[object]) -> list[str]:
    """How errors and summaries name inputs: paths as given, arrays by position."""
    return [
        x.name
        if isinstance(x, Shards)
        else os.fspath(x)
        if isinstance(x, (str, os.PathLike))
        else f"array {i}"
        for i, x in enumerate(items)
    ]


def row_inputs(embeddings: object) -> list[Shards | np.ndarray]:
    """`embeddings` (one input or a list side by side) for the row-sharded
    Ray backend: each path (a .npy file, a folder or glob of shards) as its
    `Shards`, each array and `Shards` as itself; their row counts checked."""
    items = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
    if not items:
        raise ValueError("no embeddings given: pass an array, a .npy path, or a list of them")
    inputs: list[Shards | np.ndarray] = []
    for item in items:
        if isinstance(item, Shards):  # opened already
            inputs.append(item)
        elif isinstance(item, (str, os.PathLike)):
            inputs.append(open_shards(item))
        else:
            array = as_sources([item])[0]
            assert isinstance(array, np.ndarray)
            inputs.append(array)
    check_rows(inputs, input_names(items))
    return inputs
