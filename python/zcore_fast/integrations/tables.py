"""Pools the engine cannot read as they are: Parquet files and folders,
pyarrow Tables, Hugging Face datasets, and row-sharded .npy folders (or
globs) become what the engine and the methods read (a .npy path or an
array), with a table's ids alongside.

`resolve` is called by every entry point that takes embeddings
(`score`, `score_report`, `select_with`, `evaluate`, the CLI). Anything
else passes through untouched, and pyarrow is imported only when a table
is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from zcore_fast.cache.build import AUTO_BYTES, cached_copy, check_mode
from zcore_fast.integrations.arrow import concat_matrix, ids_array, pick_column
from zcore_fast.integrations.parquet import ParquetPool, import_pyarrow, is_parquet_path
from zcore_fast.io import PathLike
from zcore_fast.shards import (
    Shards,
    check_rows,
    describe_inputs,
    input_names,
    is_sharded,
    open_shards,
    pool_shape,
)
from zcore_fast.shards import stats as shard_stats
from zcore_fast.shards import writer as shard_writer

ProgressFn = Callable[[int, int], object]


@dataclass(frozen=True)
class Resolved:
    """A pool ready for the engine: `sources` is what `io.as_sources` takes."""

    #: The embeddings to score: unchanged, or the table's matrix (an array)
    #: or its dimension-major copy in the column cache (a path).
    embeddings: Any
    #: The id of each row, from `id_column`, or None.
    ids: np.ndarray | None = None
    #: What was read, for summaries (`--json`): format, path, parts,
    #: their first rows, column, id column; empty for non-table inputs.
    info: dict[str, Any] = field(default_factory=dict)
    #: The column cache entry holding the copy, or None.
    cache_path: str | None = None
    #: Seconds spent building that entry in this call (0.0 when reused).
    cache_seconds: float = 0.0

    @property
    def is_table(self) -> bool:
        """Whether the input was a table (its copy needs no further cache)."""
        return bool(self.info)


def is_table(obj: object) -> bool:
    """Whether `obj` is a Parquet path, a pyarrow Table or RecordBatch, or
    a Hugging Face `datasets.Dataset` (checked without importing them)."""
    return is_parquet_path(obj) or _is_arrow_table(obj) or _is_hf_dataset(obj)


def needs_resolving(embeddings: object) -> bool:
    """Whether `embeddings` (one input or a list) holds a table or row shards."""
    items = embeddings if isinstance(embeddings, (list, tuple)) else [embeddings]
    return any(is_table(e) or is_sharded(e) for e in items)


@contextmanager
def resolve(
    embeddings: Any,
    *,
    column: str | None = None,
    id_column: str | None = None,
    cache: object = "auto",
    cache_dir: PathLike | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[Resolved]:
    """Yields `embeddings` as the engine takes them. A Parquet pool larger
    than the cache threshold (or any with `cache="always"`) is streamed into
    the column cache and the entry is held while the caller works."""
    if isinstance(embeddings, (list, tuple)) and any(is_table(e) for e in embeddings):
        raise ValueError(
            "a Parquet file, Arrow table or dataset is a pool on its own; it cannot be listed "
            "with other inputs (pass it alone, with column= naming its embedding column)"
        )
    items = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
    if any(is_sharded(e) for e in items) and not is_table(embeddings):
        if column is not None or id_column is not None:
            raise ValueError(
                "column= and id_column= (--column, --id-column) apply to Parquet files, Arrow "
                "tables and Hugging Face datasets, not to .npy shards"
            )
        with _sharded(items, cache, cache_dir, threads, progress) as r:
            yield r
        return
    if not is_table(embeddings):
        if column is not None or id_column is not None:
            raise ValueError(
                "column= and id_column= (--column, --id-column) apply to Parquet files, Arrow "
                "tables and Hugging Face datasets; these embeddings are neither"
            )
        yield Resolved(embeddings)
        return
    if is_parquet_path(embeddings):
        with _parquet(embeddings, column, id_column, cache, cache_dir, threads, progress) as r:
            yield r
        return
    yield _in_memory(embeddings, column, id_column)


@contextmanager
def _parquet(
    path: Any,
    column: str | None,
    id_column: str | None,
    cache: object,
    cache_dir: PathLike | None,
    threads: int | None,
    progress: ProgressFn | None,
) -> Iterator[Resolved]:
    pool = ParquetPool.open(path, column, id_column)
    ids = pool.read_ids()
    info = {
        "format": "parquet",
        "path": os.fspath(path),
        "parts": list(pool.parts),
        "offsets": pool.offsets,
        "column": pool.column,
        "id_column": pool.id_column,
    }
    mode = check_mode(cache)
    if mode == "never" or (mode == "auto" and pool.n * pool.d * 4 <= AUTO_BYTES):
        yield Resolved(pool.read_matrix(threads), ids, info)
        return
    with cached_copy(
        pool.stats(),
        (pool.n, pool.d),
        pool.cache_dtype,
        pool.write_columns,
        cache_dir=cache_dir,
        threads=threads,
        progress=progress,
    ) as prepared:
        yield Resolved(prepared.sources[0], ids, info, prepared.path, prepared.seconds)


@contextmanager
def _sharded(
    items: list[Any],
    cache: object,
    cache_dir: PathLike | None,
    threads: int | None,
    progress: ProgressFn | None,
) -> Iterator[Resolved]:
    """Inputs side by side, any of them row shards: one array per input in
    memory when small, else one dimension-major copy of them all."""
    names = input_names(items)
    inputs = [x if isinstance(x, np.ndarray) else open_shards(x) for x in items]
    n = check_rows(inputs, names)
    d = pool_shape(inputs)[1]
    info: dict[str, Any] = describe_inputs(inputs, names)
    mode = check_mode(cache)
    in_memory = mode == "never" or (mode == "auto" and n * d * 4 <= AUTO_BYTES)
    if in_memory or any(isinstance(x, np.ndarray) for x in inputs):
        # Arrays are never cached (as for .npy inputs): all in memory then.
        yield Resolved([x.load() if isinstance(x, Shards) else x for x in inputs], info=info)
        return
    shards = [x for x in inputs if isinstance(x, Shards)]
    dtype = "float16" if all(x.dtype == np.float16 for x in shards) else "float32"
    with cached_copy(
        shard_stats(shards),
        (n, d),
        dtype,
        shard_writer(shards),
        cache_dir=cache_dir,
        threads=threads,
        progress=progress,
    ) as prepared:
        yield Resolved(prepared.sources[0], None, info, prepared.path, prepared.seconds)


def _in_memory(table: Any, column: str | None, id_column: str | None) -> Resolved:
    """A pyarrow Table/RecordBatch or a Hugging Face Dataset: the column is
    viewed in place (Arrow's buffer; one copy when it has several chunks)."""
    pa, _ = import_pyarrow()
    if _is_hf_dataset(table):
        where = "the dataset"
        schema = table.data.schema
        arrow = table.with_format("arrow")
        get = lambda name: arrow[name]  # noqa: E731 (applies the dataset's index mapping)
        kind = "huggingface"
    else:
        where = "the table"
        schema = table.schema
        get = table.column
        kind = "arrow"
    name = pick_column(pa, schema, column, where)
    data = _chunked(pa, get(name))
    matrix = concat_matrix(pa, data.chunks, name, where)
    ids = None
    if id_column is not None:
        if id_column not in schema.names:
            raise ValueError(
                f"{where} has no id column {id_column!r}; its columns are "
                f"{', '.join(map(repr, schema.names))}"
            )
        ids = ids_array(pa, _chunked(pa, get(id_column)), id_column, where)
    info = {"format": kind, "column": name, "id_column": id_column}
    return Resolved(matrix, ids, info)


def _chunked(pa: Any, column: Any) -> Any:
    """A column as a ChunkedArray (Tables give one, RecordBatches an Array)."""
    return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])


def _is_arrow_table(obj: object) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("pyarrow") and type(obj).__name__ in ("Table", "RecordBatch")


def _is_hf_dataset(obj: object) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("datasets") and type(obj).__name__ == "Dataset"
