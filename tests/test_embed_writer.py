"""The partial output file: chunked writes, cut to the rows written, atomic
rename, locking; and the progress record (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest
from zcore_fast.embedding.state import Progress, config_mismatch
from zcore_fast.embedding.writer import PartialArray, partial_path


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_finalize_cuts_to_the_rows_written_and_matches_np_save(tmp_path, dtype) -> None:
    final = tmp_path / "emb.npy"
    rows = np.arange(7 * 5, dtype=dtype).reshape(7, 5)
    part = PartialArray(final, 1000, 5, np.dtype(dtype), create=True)
    part.write(0, rows[:4])
    part.write(4, rows[4:])
    assert not final.exists() and partial_path(final).exists()
    part.finalize(7)
    part.close()
    assert not partial_path(final).exists()
    np.save(tmp_path / "ref.npy", rows)
    assert final.read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_reopen_checks_shape_and_a_second_writer_is_locked_out(tmp_path) -> None:
    final = tmp_path / "e.npy"
    first = PartialArray(final, 10, 3, np.dtype(np.float16), create=True)
    with pytest.raises(BlockingIOError, match="in use by another zcore-fast embed run"):
        PartialArray(final, 10, 3, np.dtype(np.float16), create=False)
    first.write(0, np.ones((2, 3), np.float16))
    first.close()
    again = PartialArray(final, 10, 3, np.dtype(np.float16), create=False)
    assert (np.asarray(again.array[:2]) == 1).all()  # rows survive close + reopen
    again.close()
    with pytest.raises(ValueError, match=r"holds \(10, 3\) float16, not \(10, 4\)"):
        PartialArray(final, 10, 4, np.dtype(np.float16), create=False)
    with pytest.raises(FileNotFoundError, match="partial output is missing"):
        PartialArray(tmp_path / "other.npy", 10, 3, np.dtype(np.float16), create=False)


def test_progress_record_round_trip_and_damage(tmp_path) -> None:
    path = tmp_path / "e.npy.progress.json"
    p = Progress(config={"dtype": "float16"}, total=9, done=4, rows=3, skipped=[{"index": 1}])
    p.save(path)
    assert Progress.load(path) == p
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Progress.load(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a zcore-fast progress record"):
        Progress.load(path)


def test_config_mismatch_names_the_difference() -> None:
    base = {
        "source": {"sha256": "a", "count": 3},
        "models": [{"model": "m", "state_sha256": "w", "preprocessing": "p", "dim": 4}],
        "dtype": "float16",
        "batch_size": 8,
    }
    assert config_mismatch(base, dict(base)) is None
    changed = {**base, "models": [{**base["models"][0], "state_sha256": "v"}]}
    assert config_mismatch(base, changed) == "the weights of model 1 (m) differ"
    moved = {**base, "source": {"sha256": "b", "count": 3}}
    assert config_mismatch(base, moved) == "the image list changed (same count, other paths)"
