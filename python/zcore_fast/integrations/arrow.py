"""Arrow list columns as embedding matrices, and id columns as arrays.

An embedding column is `list<float>`, `large_list<float>` or
`fixed_size_list<float>[D]` of float16, float32 or float64 (Parquet has no
fixed-size list, so files hold `list<float>`; NeMo Curator and
clip-retrieval write those). A column becomes an (N, D) NumPy matrix over
Arrow's own value buffer (no copy per row, no Python per row), after the
checks that make it one: no null rows or values, every row D long. Errors
name the first bad row, counted from the first row of the whole pool.

pyarrow is imported by the callers (`tables.py`, `parquet.py`) only when an
Arrow input is given, so this module needs nothing but NumPy at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Column names tried, in order, when no `column` is given: the common
#: spellings (NeMo Curator writes "embeddings", LAION "embedding").
DEFAULT_COLUMNS = ("embedding", "embeddings", "emb", "vector", "features")

_FLOAT_TYPES = {"halffloat": np.float16, "float": np.float32, "double": np.float64}


def is_list_type(pa: Any, t: Any) -> bool:
    """Whether the Arrow type `t` is a list, large list or fixed-size list."""
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def pick_column(pa: Any, schema: Any, column: str | None, where: str) -> str:
    """The embedding column of `schema`: `column` when given (checked), else
    the first of DEFAULT_COLUMNS present, else the only list column."""
    names = list(schema.names)
    if column is not None:
        if column not in names:
            raise ValueError(
                f"{where} has no column {column!r}; its columns are {_listing(names)}; "
                "pass the embedding column's name (--column / column=)"
            )
        check_embedding_type(pa, schema.field(column).type, column, where)
        return column
    lists = [n for n in names if is_list_type(pa, schema.field(n).type)]
    # A column named like embeddings is the one, even of a wrong type (then
    # the error says what its type is, not that nothing was found).
    found = [n for n in DEFAULT_COLUMNS if n in names] or (lists if len(lists) == 1 else [])
    if found:
        check_embedding_type(pa, schema.field(found[0]).type, found[0], where)
        return found[0]
    if not lists:
        raise ValueError(
            f"{where} has no list column to read embeddings from (columns: {_listing(names)}); "
            "embeddings must be a list<float> column"
        )
    raise ValueError(
        f"{where} has several list columns ({_listing(lists)}); say which holds the "
        "embeddings (--column / column=)"
    )


def check_embedding_type(pa: Any, t: Any, column: str, where: str) -> np.dtype:
    """The NumPy dtype of the values of embedding column `column` of type `t`;
    a clear error for any other type."""
    if not is_list_type(pa, t):
        raise TypeError(
            f"column {column!r} of {where} is {t}, not a list of floats; embeddings must be "
            "list<float16|float32|float64> (one list per row)"
        )
    value = t.value_type
    dtype = _FLOAT_TYPES.get(str(value))
    if dtype is None:
        raise TypeError(
            f"column {column!r} of {where} holds lists of {value}; embeddings must be lists of "
            "float16, float32 or float64 (cast the column, e.g. pyarrow.compute.cast)"
        )
    return np.dtype(dtype)


def list_width(pa: Any, array: Any, column: str, where: str, first_row: int = 0) -> int | None:
    """D: the length of the first non-null row of list `array` (the fixed
    size for fixed-size lists), or None when it has no such row."""
    if pa.types.is_fixed_size_list(array.type):
        return int(array.type.list_size)
    if len(array) == 0:
        return None
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return None
    lengths = _lengths(array)
    return int(lengths[rows[0]])


def to_matrix(
    pa: Any, array: Any, d: int, column: str, where: str, first_row: int = 0
) -> np.ndarray:
    """The list array `array` (one chunk) as a read-only (len, d) matrix over
    its value buffer (copied only when Arrow's buffer cannot be viewed).

    Raises ValueError naming the row (`first_row` + its position) for a
    null row, a null value, or a row whose length is not `d`.
    """
    n = len(array)
    if array.null_count:
        row = int(np.flatnonzero(~array.is_valid().to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"row {first_row + row:,} of {where} has no embedding (null in column "
            f"{column!r}); drop or fill the rows without one first"
        )
    if pa.types.is_fixed_size_list(array.type):
        if array.type.list_size != d:
            raise ValueError(
                f"column {column!r} of {where} has {array.type.list_size} values per row, "
                f"earlier rows have {d}; every embedding must have the same length"
            )
    else:
        lengths = _lengths(array)
        bad = np.flatnonzero(lengths != d)
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"row {first_row + row:,} of {where} has {int(lengths[row])} values in column "
                f"{column!r}, the rows before it have {d}; every embedding must have the "
                "same length"
            )
    values = array.flatten()  # honours slice offsets, unlike .values
    if values.null_count:
        at = int(np.flatnonzero(~values.is_valid().to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"row {first_row + at // max(d, 1):,} of {where} has a null value in column "
            f"{column!r}; embeddings must be complete"
        )
    flat = values.to_numpy(zero_copy_only=False)
    return flat.reshape(n, d)


def concat_matrix(pa: Any, chunks: Sequence[Any], column: str, where: str) -> np.ndarray:
    """The chunks of a (Chunked) list column as one (N, D) matrix: a view of
    the only chunk, or one copy of them all."""
    d = None
    first = 0
    for chunk in chunks:
        d = list_width(pa, chunk, column, where, first) if d is None else d
        first += len(chunk)
    if d is None:
        if first == 0:
            raise ValueError(f"{where} has no rows; there is nothing to select from")
        raise ValueError(
            f"every row of {where} is null in column {column!r}; there are no embeddings"
        )
    parts, first = [], 0
    for chunk in chunks:
        parts.append(to_matrix(pa, chunk, d, column, where, first))
        first += len(chunk)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def ids_array(pa: Any, chunked: Any, column: str, where: str) -> np.ndarray:
    """An id column as a NumPy array (integers stay integers, strings become
    an object array); an error naming the first null id."""
    if chunked.null_count:
        valid = np.concatenate(
            [c.is_valid().to_numpy(zero_copy_only=False) for c in _chunks(chunked)]
        )
        row = int(np.flatnonzero(~valid)[0])
        raise ValueError(
            f"row {row:,} of {where} has no id (null in column {column!r}); every row needs one"
        )
    t = chunked.type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
    ):
        raise TypeError(f"id column {column!r} of {where} is {t}; ids must be integers or strings")
    return chunked.to_numpy()


def _chunks(array: Any) -> list[Any]:
    return list(array.chunks) if hasattr(array, "chunks") else [array]


def _lengths(array: Any) -> np.ndarray:
    """Row lengths of a (large) list array, honouring its slice offset."""
    offsets = array.offsets.to_numpy(zero_copy_only=False)
    return np.diff(offsets)


def _listing(names: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
