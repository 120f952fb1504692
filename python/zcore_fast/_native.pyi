"""Type stubs of the Rust extension (checked by mypy.stubtest in tests)."""

import os
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
import numpy.typing as npt

_Input = Sequence[str | npt.NDArray[np.floating]]

__all__ = [
    "CANCEL_EVENT",
    "CancelledError",
    "ZCoreError",
    "build_cache",
    "dim_stats",
    "finish_halves",
    "isa_level",
    "isa_levels",
    "rows_to_columns",
    "sample_draws",
    "score",
    "score_range",
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
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def finish_halves(
    first: npt.NDArray[np.int64],
    second: npt.NDArray[np.int64],
    *,
    rand_init: bool,
    seed: int,
    threads: int = 1,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
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
def dim_stats(
    inputs: _Input,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def sample_draws(
    inputs: _Input, *, seed: int, start: int, count: int, sample_dim: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
def trace(
    inputs: _Input, dims: Sequence[int], q: Sequence[float], *, redund_nn: int, redund_exp: float
) -> tuple[int, npt.NDArray[np.uint32], npt.NDArray[np.float64]]: ...
