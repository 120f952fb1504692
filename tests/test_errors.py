"""Bad input: a clear error that says what is wrong, and nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
import zcore_fast

FAST = {"n_sample": 100, "redund_nn": 10}


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        zcore_fast.score("/does/not/exist.npy", **FAST)


def test_not_npy_wrong_magic_and_truncated(tmp_path) -> None:
    text = tmp_path / "a.npy"
    text.write_text("hello, not numpy at all")
    with pytest.raises(ValueError, match=r"not an \.npy file"):
        zcore_fast.score(text, **FAST)
    good = tmp_path / "g.npy"
    np.save(good, np.ones((100, 4), dtype=np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        zcore_fast.score(cut, **FAST)


def test_not_two_dimensional(tmp_path) -> None:
    with pytest.raises(ValueError, match="2-D"):
        zcore_fast.score(np.ones(10, dtype=np.float32), **FAST)
    np.save(tmp_path / "3d.npy", np.ones((2, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        zcore_fast.score(tmp_path / "3d.npy", **FAST)


def test_too_few_rows_and_dims() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        zcore_fast.score(np.ones((1, 4), dtype=np.float32), **FAST)
    with pytest.raises(ValueError, match="fewer than sample_dim"):
        zcore_fast.score(np.ones((10, 1), dtype=np.float32), **FAST)


def test_non_numeric_dtype(tmp_path) -> None:
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        zcore_fast.score(np.array([["a", "b"], ["c", "d"]]), **FAST)
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match="floating point"):
        zcore_fast.score(tmp_path / "s.npy", **FAST)
    ints = np.arange(40).reshape(10, 4)
    assert zcore_fast.score(ints, **FAST).shape == (10,)  # integers are cast


def test_nan_and_inf_rows_are_named() -> None:
    x = np.ones((20, 3), dtype=np.float32)
    x[3, 1] = np.nan
    x[17, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 row\(s\): 3, 17"):
        zcore_fast.score(x, **FAST)


def test_row_counts_must_match(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.ones((10, 2), dtype=np.float32))
    np.save(tmp_path / "b.npy", np.ones((11, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="row counts differ"):
        zcore_fast.score([tmp_path / "a.npy", tmp_path / "b.npy"], **FAST)


@pytest.mark.parametrize(
    "kwargs", [{"n_sample": 0}, {"redund_nn": 0}, {"sample_dim": 0}, {"threads": 0}]
)
def test_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        zcore_fast.score(np.ones((10, 3), dtype=np.float32), **{**FAST, **kwargs})
