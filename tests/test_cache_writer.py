"""The Python-side column-cache writer (cache/writer.py), which Parquet parts
and row-sharded .npy folders go through: its copy equals NumPy's transpose
(the oracle) for random shapes, block splits, column offsets and dtypes,
and the Rust block transpose under it moves bits unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from zcore_fast import _native
from zcore_fast.cache import writer
from zcore_fast.cache.writer import ColumnFile


@pytest.mark.parametrize("seed", range(6))
def test_copy_equals_the_transpose(tmp_path: Path, seed: int, monkeypatch) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 700)), int(rng.integers(1, 90))
    source = rng.choice([np.float16, np.float32, np.float64])
    dtype = np.dtype(np.float16 if source == np.float16 else np.float32)
    x = rng.normal(size=(n, d)).astype(source)
    # Small tiles, so a block is split into several of them.
    monkeypatch.setattr(writer, "TILE_BYTES", int(rng.integers(1, 4096)))
    path = tmp_path / "copy.npy"
    with ColumnFile(path, (n, d), dtype) as out:
        row = 0
        while row < n:  # row blocks of random sizes, each in two column halves
            rows = int(rng.integers(1, n - row + 1))
            split = int(rng.integers(0, d + 1))
            block = x[row : row + rows]
            out.write(row, block[:, :split], col=0)
            out.write(row, np.asfortranarray(block[:, split:]), col=split)
            row += rows
    got = np.load(path)
    assert got.dtype == dtype and got.flags.f_contiguous
    np.testing.assert_array_equal(got, x.astype(dtype))


@pytest.mark.parametrize("bits", [np.uint16, np.uint32])
def test_rows_to_columns_moves_bits(bits: type) -> None:
    rng = np.random.default_rng(1)
    src = rng.integers(0, np.iinfo(bits).max, size=(37, 45), dtype=bits)
    dst = np.zeros((20, 37), dtype=bits)
    _native.rows_to_columns(src, 25, dst)
    np.testing.assert_array_equal(dst, src[:, 25:45].T)


def test_rows_to_columns_refuses_bad_arguments() -> None:
    src = np.zeros((4, 6), dtype=np.uint16)
    with pytest.raises(ValueError, match=r"does not take columns 4\.\.7"):
        _native.rows_to_columns(src, 4, np.zeros((3, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match="does not take"):
        _native.rows_to_columns(src, 0, np.zeros((3, 5), dtype=np.uint16))
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.rows_to_columns(np.asfortranarray(src), 0, np.zeros((3, 4), dtype=np.uint16))
    with pytest.raises(TypeError):
        _native.rows_to_columns(src.astype(np.float64), 0, np.zeros((3, 4)))
