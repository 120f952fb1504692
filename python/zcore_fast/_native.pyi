"""Type stubs of the Rust extension (checked by mypy.stubtest in tests)."""

import os
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, final

import numpy as np
import numpy.typing as npt

_Input = Sequence[str | npt.NDArray[np.floating]]

__all__ = [
    "CANCEL_EVENT",
    "CancelledError",
    "RowShard",
    "ZCoreError",
    "build_cache",
    "decode_parquet_page",
    "dim_stats",
    "finish_halves",
    "first_share",
    "isa_level",
    "isa_levels",
    "median_narrow",
    "median_ranks",
    "median_rounds",
    "median_values",
    "merge_penalties",
    "merge_winners",
    "rows_to_columns",
    "sample_draws",
    "score",
    "score_range",
    "splice_penalties",
    "trace",
]

class ZCoreError(Exception): ...
class CancelledError(ZCoreError): ...

#: The event (anything with is_set()) of the `zcore_fast.cancel_on` scope.
CANCEL_EVENT: ContextVar[Any]

def score(
    inputs: _Input,
    *,
    n_sample: int,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    rand_init: bool,
    seed: int,
    threads: int,
    progress: Callable[[int, int], object] | None = None,
    search: str = "auto",
    isa: str | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def score_range(
    inputs: _Input,
    *,
    n_sample: int,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    seed: int,
    threads: int,
    start: int,
    end: int,
    progress: Callable[[int, int], object] | None = None,
    isa: str | None = None,
    part: int = 0,
    parts: int = 1,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def finish_halves(
    first: npt.NDArray[np.int64],
    second: npt.NDArray[np.int64],
    *,
    rand_init: bool,
    seed: int,
    threads: int = 1,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

_U32 = npt.NDArray[np.uint32]
_U64 = npt.NDArray[np.uint64]
_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]

@final
class RowShard:
    """One shard of a row-sharded run (the Ray backend's sharding='rows')."""

    def __new__(
        cls,
        inputs: _Input,
        *,
        first_row: int,
        total_rows: int,
        n_sample: int,
        sample_dim: int,
        redund_nn: int,
        redund_exp: float,
        seed: int,
        threads: int,
        isa: str | None = None,
    ) -> RowShard: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    def extremes(self) -> tuple[_F64, _F64]: ...
    def key_histogram(self, prefixes: _U32, bits_done: int, bits: int) -> _U32: ...
    def set_stats(self, lo: _F64, md: _F64, hi: _F64) -> None: ...
    def winners(self, first: int, count: int) -> tuple[_F32, _U64, _F32]: ...
    def neighbours(
        self, samples: _U64, rows: _U64, coords: _F32, limit: int
    ) -> tuple[_U32, _U64, _F32, npt.NDArray[np.bool_]]: ...
    def apply(self, first: int, winners: _U64, offsets: _U64, rows: _U64, fixed: _I64) -> None: ...
    def halves(self) -> tuple[_I64, _I64]: ...

def median_rounds() -> list[int]: ...
def median_ranks(n: int) -> list[int]: ...
def median_narrow(counts: _U64, prefixes: _U32, ranks: _U64, bits: int) -> tuple[_U32, _U64]: ...
def median_values(keys: _U32, n: int) -> _F64: ...
def merge_winners(parts: list[tuple[_F32, _U64, _F32]], sample_dim: int) -> tuple[_U64, _F32]: ...
def merge_penalties(
    parts: list[tuple[_U32, _U64, _F32, npt.NDArray[np.bool_]]],
    *,
    k: int,
    redund_exp: float,
    threads: int = 1,
) -> tuple[tuple[_U64, _U64, _I64], _U32]: ...
def splice_penalties(
    merged: tuple[_U64, _U64, _I64], at: _U32, redo: tuple[_U64, _U64, _I64]
) -> tuple[_U64, _U64, _I64]: ...
def first_share(k: int, rows: int, total: int, margin: float) -> int: ...
def isa_level(name: str | None = None) -> str: ...
def isa_levels() -> list[str]: ...
def build_cache(
    inputs: _Input,
    out_path: str | os.PathLike[str],
    *,
    threads: int,
    progress: Callable[[int, int], object] | None = None,
) -> tuple[int, int, str]: ...
def rows_to_columns(
    src: npt.NDArray[np.uint16] | npt.NDArray[np.uint32],
    first: int,
    dst: npt.NDArray[np.uint16] | npt.NDArray[np.uint32],
) -> None: ...
def decode_parquet_page(
    rep: npt.NDArray[np.uint8],
    def_: npt.NDArray[np.uint8],
    values: npt.NDArray[np.uint8],
    dictionary_encoded: bool,
    dictionary: npt.NDArray[np.uint16] | npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint16] | npt.NDArray[np.uint32],
    /,
    *,
    d: int,
    max_def: int,
    max_rep: int,
    first: int,
) -> int: ...
def dim_stats(
    inputs: _Input,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def sample_draws(
    inputs: _Input, *, seed: int, start: int, count: int, sample_dim: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
def trace(
    inputs: _Input, dims: Sequence[int], q: Sequence[float], *, redund_nn: int, redund_exp: float
) -> tuple[int, npt.NDArray[np.uint32], npt.NDArray[np.float64]]: ...
