"""The torch backend's dimension-major pool: one row per embedding dimension.

One sample reads `sample_dim` whole columns of the pool, so storing it
dimension-major (D x N) makes each read contiguous, as in the CPU engine
(rust/pool/). Sources (arrays or .npy files, C or Fortran order,
float16/32/64, several concatenated along dimensions) are read in chunks,
converted and transposed on a work device, checked, and written into a
(D, N) tensor that lives on the scoring device or, when the pool is larger
than its memory, in host memory (see blocks.py).

Stored values are `storage(float32(x))`: float64 input is first rounded to
float32, exactly as the CPU engine does, then (for float16 storage) to
float16 with round-to-nearest-even, as NumPy's `astype(np.float16)`. Feeding
the CPU engine `x.astype(np.float32).astype(np.float16)` therefore scores
the very same values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Bytes of source data converted per step: bounds the work-device memory.
CHUNK_BYTES = 64 << 20
#: Rows in the fixed subsample that estimates neighbour radii.
SUBSAMPLE_ROWS = 4096
#: Largest finite float16 value: larger values would be stored as Inf.
FLOAT16_MAX = 65504.0


class Float16OverflowError(ValueError):
    """Values beyond float16's range; raised so a caller can retry in float32."""


@dataclass(frozen=True)
class Sources:
    """Opened, checked input matrices (N rows each), concatenated along D."""

    arrays: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    n: int
    d: int


def open_sources(sources: Sequence[str | np.ndarray]) -> Sources:
    """Opens paths as read-only memory maps and checks shapes and dtypes,
    with the CPU engine's messages (what is wrong, what to do)."""
    arrays, names = [], []
    for i, src in enumerate(sources):
        name = src if isinstance(src, str) else f"array {i}"
        arr = _load(src) if isinstance(src, str) else src
        if arr.ndim != 2:
            raise ValueError(f"{name} has shape {arr.shape}; expected a 2-D array (N x D)")
        if arr.dtype.type not in (np.float16, np.float32, np.float64):
            raise TypeError(
                f"{name} has dtype {arr.dtype}; embeddings must be float16, float32 or float64"
            )
        arrays.append(arr)
        names.append(name)
    if not arrays:
        raise ValueError("no embeddings given")
    n = arrays[0].shape[0]
    for arr, name in zip(arrays, names):
        if arr.shape[0] != n:
            raise ValueError(
                f"row counts differ: {names[0]} has {n} rows but {name} has {arr.shape[0]}; "
                "concatenated embedding files must describe the same examples in the same order"
            )
    d = sum(a.shape[1] for a in arrays)
    if n < 2:
        raise ValueError(f"need at least 2 rows (examples) to score, got {n}")
    if d == 0:
        raise ValueError("embeddings have 0 dimensions")
    if n >= 1 << 31 or d >= 1 << 31:
        raise ValueError(f"pool of {n} x {d} is too large for the torch backend (2^31 limit)")
    return Sources(tuple(arrays), tuple(names), n, d)


def _load(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; check the path")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None


def _pieces(arr: np.ndarray) -> Iterator[tuple[slice, int, np.ndarray, bool]]:
    """(rows, first column, block, block is columns x rows) pieces of `arr`,
    each about CHUNK_BYTES, read along its storage order: row blocks of a
    C-order array, column blocks (returned as columns x rows) of a Fortran
    one, so every read is contiguous."""
    n, d = arr.shape
    fortran = arr.flags.f_contiguous and not arr.flags.c_contiguous
    line = (n if fortran else d) * arr.itemsize
    step = max(1, CHUNK_BYTES // max(1, line))
    for at in range(0, d if fortran else n, step):
        stop = min(at + step, d if fortran else n)
        if fortran:
            yield slice(0, n), at, arr[:, at:stop].T, True
        else:
            yield slice(at, stop), 0, arr[at:stop], False


def fill(src: Sources, out: torch.Tensor, work: torch.device, check_overflow: bool) -> None:
    """Writes the dimension-major pool into `out` (D, N), converting and
    transposing on `work`; refuses NaN/Inf rows (naming them) and, when
    `check_overflow`, values that float16 storage would turn into Inf."""
    bad_input = torch.zeros(src.n, dtype=torch.bool, device=work)
    overflow = torch.zeros(src.n, dtype=torch.bool, device=work)
    first_dim = 0
    for arr in src.arrays:
        for rows, col0, block, column_major in _pieces(arr):
            # A private, native-order copy: memory maps are read-only and
            # may be big-endian; float64 halves its size before transfer.
            host = np.array(block, dtype=block.dtype.newbyteorder("="))
            if host.dtype == np.float64:
                host = host.astype(np.float32)
            vals = torch.from_numpy(host).to(work).float()
            cols_major = vals if column_major else vals.T  # (columns, rows)
            bad_input[rows] |= ~torch.isfinite(cols_major).all(dim=0)
            stored = cols_major.to(out.dtype)
            if check_overflow:
                overflow[rows] |= ~torch.isfinite(stored).all(dim=0)
            dim0 = first_dim + col0
            out[dim0 : dim0 + stored.shape[0], rows].copy_(stored)
        first_dim += arr.shape[1]
    _refuse(
        bad_input,
        "embeddings contain NaN or Inf in {} row(s): {}; remove or repair "
        "those rows before scoring",
        ValueError,
    )
    _refuse(
        overflow,
        "embeddings have values beyond float16's range (+-65504) in {} row(s): "
        "{}; use float32 storage (storage='float32') or scale the embeddings",
        Float16OverflowError,
    )


def _refuse(bad: torch.Tensor, template: str, kind: type[Exception]) -> None:
    count = int(bad.sum())
    if count:
        rows = torch.nonzero(bad)[:8, 0].tolist()
        shown = ", ".join(map(str, rows)) + (", ..." if count > 8 else "")
        raise kind(template.format(count, shown))


def dim_stats(columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(min, median, max) per row of `columns` (dims x N), float64, as the CPU
    engine computes them: the median is the middle value, or for even N the
    mean (in float64) of the two middle values."""
    n = columns.shape[1]
    vals = columns.float()
    lo = vals.amin(dim=1).double()
    hi = vals.amax(dim=1).double()
    upper = vals.kthvalue(n // 2 + 1, dim=1).values.double()
    if n % 2:
        return lo, upper, hi
    lower = vals.kthvalue(n // 2, dim=1).values.double()
    return lo, (lower + upper) / 2.0, hi


def stats_in_blocks(
    columns: torch.Tensor, work: torch.device, budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`dim_stats` of a (D, N) tensor, a block of dimensions at a time on
    `work` so that the float32 copy and the selection fit in `budget` bytes."""
    d, n = columns.shape
    step = max(1, budget // (16 * n))
    parts = [dim_stats(columns[i : i + step].to(work)) for i in range(0, d, step)]
    return tuple(torch.cat([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]


def subsample_rows(n: int) -> torch.Tensor:
    """Rows j * n // m for j < m = min(n, SUBSAMPLE_ROWS): an even spread."""
    m = min(n, SUBSAMPLE_ROWS)
    return torch.arange(m, dtype=torch.int64) * n // m
