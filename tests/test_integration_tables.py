"""Parquet files and folders, pyarrow Tables and Hugging Face datasets as
pools: the same scores and selections as the NumPy array they hold (the
oracle), ids carried to the outputs, and clear errors for bad tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from zcore_fast.cli import main
from zcore_fast.integrations.parquet import ParquetPool

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FAST = {"n_sample": 2_000, "redund_nn": 20}
NP_TO_ARROW = {np.float16: pa.float16(), np.float32: pa.float32(), np.float64: pa.float64()}


def list_column(x: np.ndarray, kind: str = "list") -> object:
    """x (N, D) as an Arrow list, large_list or fixed_size_list column."""
    n, d = x.shape
    values = pa.array(np.ascontiguousarray(x).reshape(-1), type=NP_TO_ARROW[x.dtype.type])
    if kind == "fixed":
        return pa.FixedSizeListArray.from_arrays(values, d)
    offsets = np.arange(0, n * d + 1, d)
    if kind == "large":
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def write_parts(
    folder: Path, x: np.ndarray, parts: int, row_group: int, ids: list | None = None
) -> Path:
    """x split into `parts` Parquet files (several row groups each)."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(x), parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        cols = {"embedding": list_column(x[a:b])}
        if ids is not None:
            cols["id"] = pa.array(ids[a:b])
        pq.write_table(pa.table(cols), folder / f"part-{i:05d}.parquet", row_group_size=row_group)
    return folder


def pool(seed: int, n: int = 700, d: int = 12, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# ---- the oracle: a table scores exactly as its array -----------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("cache", ["never", "always"])
def test_parquet_folder_scores_as_its_array(tmp_path: Path, dtype: type, cache: str) -> None:
    for seed in range(2):  # fresh random pools, parts and row groups
        rng = np.random.default_rng(seed)
        x = pool(seed, n=int(rng.integers(300, 900)), d=int(rng.integers(3, 20)), dtype=dtype)
        folder = write_parts(
            tmp_path / f"{seed}", x, int(rng.integers(1, 4)), int(rng.integers(50, 300))
        )
        want = zcore_fast.score(x, seed=seed, **FAST)
        got = zcore_fast.score_report(
            folder, seed=seed, cache=cache, cache_dir=tmp_path / "cache", **FAST
        )
        np.testing.assert_array_equal(got.scores, want)
        assert (got.cache_path is not None) == (cache == "always")


def test_streamed_copy_is_the_arrays_dimension_major_layout(tmp_path: Path) -> None:
    """The streamed writer against np.asfortranarray, on batches that split
    row groups, several parts and both kept dtypes."""
    for seed, dtype in enumerate([np.float16, np.float32, np.float64]):
        x = pool(seed, n=1_000 + seed * 77, d=9, dtype=dtype)
        folder = write_parts(tmp_path / f"p{seed}", x, 3, 130)
        table = ParquetPool.open(folder, None, None)
        out = tmp_path / f"c{seed}.npy"
        seen: list[tuple[int, int]] = []

        def record(done: int, total: int, seen: list = seen) -> None:
            seen.append((done, total))

        kept = "float16" if dtype == np.float16 else "float32"
        assert table.write_columns(out, 2, record) == (len(x), 9, kept)
        copy = np.load(out)
        assert copy.flags.f_contiguous
        np.testing.assert_array_equal(copy, x.astype(copy.dtype))
        assert seen[-1] == (len(x), len(x))


@pytest.mark.parametrize("kind", ["list", "large", "fixed"])
def test_arrow_table_of_any_list_type_scores_as_its_array(kind: str) -> None:
    x = pool(3)
    chunks = [list_column(x[:300], kind), list_column(x[300:], kind)]  # two chunks: one copy
    table = pa.table({"emb": pa.chunked_array(chunks), "other": pa.array(range(len(x)))})
    np.testing.assert_array_equal(
        zcore_fast.score(table, column="emb", **FAST), zcore_fast.score(x, **FAST)
    )
    batch = pa.RecordBatch.from_arrays([list_column(x, kind)], names=["embedding"])
    np.testing.assert_array_equal(zcore_fast.score(batch, **FAST), zcore_fast.score(x, **FAST))


def test_sliced_table_reads_its_own_rows() -> None:
    """A slice of a table keeps the buffers of the whole: offsets must be honoured."""
    x = pool(4)
    table = pa.table({"embedding": list_column(x)}).slice(100, 400)
    np.testing.assert_array_equal(
        zcore_fast.score(table, **FAST), zcore_fast.score(x[100:500], **FAST)
    )


@pytest.mark.parametrize("method", ["zcore", "moderate", "random", "herding", "typiclust"])
def test_every_method_selects_from_a_table_as_from_its_array(tmp_path: Path, method: str) -> None:
    x = pool(5, n=400)
    folder = write_parts(tmp_path / "t", x, 2, 100)
    options = FAST if method == "zcore" else {}
    want = zcore_fast.select_with(method, x, 20, seed=1, **options)
    got = zcore_fast.select_with(method, folder, 20, seed=1, **options)
    np.testing.assert_array_equal(got, want)


# ---- ids ---------------------------------------------------------------------


def test_ids_come_back_in_pool_order(tmp_path: Path) -> None:
    x = pool(6, n=500)
    ids = [f"img,{i}" for i in range(500)]  # a comma: the CSV must quote it
    folder = write_parts(tmp_path / "t", x, 3, 64, ids)
    report = zcore_fast.score_report(folder, id_column="id", **FAST)
    assert report.ids.tolist() == ids
    assert report.source["offsets"] == [0, 166, 333]
    selection = zcore_fast.methods.registry.run_method("zcore", folder, 10, id_column="id", **FAST)
    assert selection.ids[selection.indices].tolist() == [ids[i] for i in selection.indices]


def test_cli_writes_ids_into_csv_and_parquet(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x = pool(7, n=600)
    ids = list(range(1000, 1600))
    folder = write_parts(tmp_path / "t", x, 2, 128, ids)
    flags = ["--n-sample", "2000", "--redund-nn", "20", "--budget", "25"]
    assert main(["select", str(folder), "--id-column", "id", "-o", str(tmp_path / "a.csv"),
                 "--json", *flags]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["input"]["id_column"] == "id" and summary["input"]["column"] == "embedding"
    assert summary["input"]["parts"] == [str(p) for p in sorted(folder.glob("*.parquet"))]
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "id,index,score,rank"
    want = zcore_fast.select(zcore_fast.score(x, **FAST), 25)
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[1]) for r in rows] == want.tolist()
    assert [int(r[0]) for r in rows] == [ids[i] for i in want]
    assert main(["select", str(folder), "--id-column", "id", "-o", str(tmp_path / "a.parquet"),
                 "-q", *flags]) == 0  # fmt: skip
    out = pq.read_table(tmp_path / "a.parquet")
    assert out.column_names == ["id", "index", "score", "rank"]
    assert out.column("index").to_pylist() == want.tolist()
    assert out.column("id").to_pylist() == [ids[i] for i in want]
    assert out.column("rank").to_pylist() == list(range(1, 26))


def test_cli_other_method_with_ids(tmp_path: Path) -> None:
    x = pool(8, n=300)
    folder = write_parts(tmp_path / "t", x, 1, 100, [f"s{i}" for i in range(300)])
    out = tmp_path / "h.csv"
    assert main(["select", str(folder), "--id-column", "id", "--method", "herding",
                 "--budget", "7", "-o", str(out), "-q"]) == 0  # fmt: skip
    want = zcore_fast.select_with("herding", x, 7)
    lines = out.read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == [f"s{i}" for i in want]


def test_parquet_cache_is_reused_and_rebuilt_when_a_part_changes(tmp_path: Path) -> None:
    x = pool(9, n=400)
    folder = write_parts(tmp_path / "t", x, 2, 100)
    kw = {"cache": "always", "cache_dir": tmp_path / "cache", **FAST}
    first = zcore_fast.score_report(folder, **kw)
    again = zcore_fast.score_report(folder, **kw)
    assert first.cache_seconds > 0 and again.cache_seconds == 0
    assert first.cache_path == again.cache_path
    other = zcore_fast.score_report(folder, **{**kw, "cache_dir": tmp_path / "cache"})
    assert other.cache_path == first.cache_path
    y = x.copy()
    y[0] += 1
    write_parts(folder, y, 2, 100)  # rewrites both parts
    changed = zcore_fast.score_report(folder, **kw)
    assert changed.cache_seconds > 0
    np.testing.assert_array_equal(changed.scores, zcore_fast.score(y, **FAST))
    names = os.listdir(tmp_path / "cache")
    assert not [n for n in names if n.endswith(".tmp")]


def test_cancelled_stream_leaves_nothing(tmp_path: Path) -> None:
    x = pool(10, n=3_000)
    folder = write_parts(tmp_path / "t", x, 3, 100)

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        zcore_fast.score(folder, cache="always", cache_dir=tmp_path / "c", cache_progress=stop)
    assert not [n for n in os.listdir(tmp_path / "c") if n.endswith((".npy", ".tmp", ".json"))]


# ---- Hugging Face datasets ------------------------------------------------------


def test_hugging_face_dataset_coreset() -> None:
    datasets = pytest.importorskip("datasets")
    from zcore_fast.integrations.huggingface import select_coreset

    x = pool(11, n=500)
    ds = datasets.Dataset.from_dict({"embedding": list(x), "label": list(range(500))})
    result = select_coreset(ds, 12, **FAST)
    want = zcore_fast.select_with("zcore", x, 12, **FAST)
    assert result.coreset["label"] == want.tolist()
    np.testing.assert_array_equal(
        np.array(result.scored["zcore_score"], dtype=np.float32), zcore_fast.score(x, **FAST)
    )
    # a shuffled view (an index mapping over the same Arrow table)
    shuffled = ds.shuffle(seed=3)
    order = np.array(shuffled["label"])
    np.testing.assert_array_equal(
        zcore_fast.select_with("zcore", shuffled, 12, **FAST),
        zcore_fast.select_with("zcore", x[order], 12, **FAST),
    )
    plain = select_coreset(ds, 5, method="random", seed=2)
    assert plain.scored is None
    assert plain.coreset["label"] == zcore_fast.select_with("random", x, 5, seed=2).tolist()
    with pytest.raises(ValueError, match="already has a column 'label'"):
        select_coreset(ds, 5, score_field="label")
    with pytest.raises(TypeError, match="DatasetDict"):
        select_coreset(datasets.DatasetDict({"train": ds}), 5)


# ---- errors ----------------------------------------------------------------------


def test_bad_tables_get_errors_naming_the_row(tmp_path: Path) -> None:
    ok = [[0.0, 1.0, 2.0]] * 5
    cases = {
        "null row": (
            pa.table({"embedding": pa.array([*ok[:3], None, *ok[:1]], pa.list_(pa.float32()))}),
            r"row 3 of .* has no embedding",
        ),
        "null value": (
            pa.table({"embedding": pa.array([*ok[:2], [0.0, None, 1.0]], pa.list_(pa.float32()))}),
            r"row 2 of .* has a null value",
        ),
        "length": (
            pa.table({"embedding": pa.array([*ok[:4], [1.0, 2.0]], pa.list_(pa.float32()))}),
            r"row 4 of .* has 2 values .* the rows before it have 3",
        ),
        "ints": (
            pa.table({"embedding": pa.array([[1, 2]] * 3, pa.list_(pa.int32()))}),
            r"lists of int32; embeddings must be lists of float16, float32 or float64",
        ),
        "not a list": (pa.table({"embedding": pa.array([1.0, 2.0])}), r"not a list of floats"),
        "two lists": (
            pa.table({"a": pa.array(ok, pa.list_(pa.float32())), "b": pa.array(ok)}),
            r"several list columns \('a', 'b'\)",
        ),
        "no list": (pa.table({"x": pa.array([1, 2])}), r"no list column"),
        "empty": (pa.table({"embedding": pa.array([], pa.list_(pa.float32()))}), r"no rows"),
    }
    for name, (table, message) in cases.items():
        with pytest.raises((ValueError, TypeError), match=message):
            zcore_fast.score(table, **FAST)
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        with pytest.raises((ValueError, TypeError), match=message.replace("row ", "row ")):
            zcore_fast.score(path, cache="always", cache_dir=tmp_path / "c", **FAST)
    assert not [n for n in os.listdir(tmp_path / "c") if n.endswith((".npy", ".tmp"))]


def test_errors_for_columns_parts_and_mixing(tmp_path: Path) -> None:
    x = pool(12, n=60, d=4)
    folder = write_parts(tmp_path / "t", x, 2, 20, list(range(60)))
    with pytest.raises(ValueError, match=r"no column 'vec'; its columns are 'embedding', 'id'"):
        zcore_fast.score(folder, column="vec")
    with pytest.raises(ValueError, match="no id column 'key'"):
        zcore_fast.score(folder, id_column="key")
    with pytest.raises(ValueError, match="apply to Parquet files, Arrow tables"):
        zcore_fast.score(x, column="embedding")
    with pytest.raises(ValueError, match="cannot be listed with other inputs"):
        zcore_fast.score([folder, x])
    pq.write_table(
        pa.table({"embedding": list_column(x[:5].astype(np.float64))}), folder / "part-9.parquet"
    )
    with pytest.raises(TypeError, match=r"part-9.parquet: column 'embedding' holds float64"):
        zcore_fast.score(folder)
    (folder / "part-9.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"part-9\.parquet: not a readable Parquet file"):
        zcore_fast.score(folder)
    nulls = pa.table({"embedding": list_column(x), "id": pa.array([1, None] + [3] * 58)})
    with pytest.raises(ValueError, match="row 1 of the table has no id"):
        zcore_fast.score(nulls, id_column="id")


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    x = pool(13, n=50, d=4)
    np.save(tmp_path / "x.npy", x)
    assert main(["select", str(tmp_path / "x.npy"), "--column", "e", "--budget", "3",
                 "-o", str(tmp_path / "o.csv")]) == 2  # fmt: skip
    assert "apply to Parquet input" in capsys.readouterr().err
    folder = write_parts(tmp_path / "t", x, 1, 20)
    assert main(["select", str(folder), str(tmp_path / "x.npy"), "--budget", "3",
                 "-o", str(tmp_path / "o.csv")]) == 2  # fmt: skip
    assert "pool on its own" in capsys.readouterr().err
    assert main(["select", str(folder), "--column", "nope", "--budget", "3",
                 "-o", str(tmp_path / "o.csv")]) == 1  # fmt: skip
    assert "no column 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("pages", [True, False])
def test_streaming_memory_is_bounded_by_the_batches_not_the_table(
    tmp_path: Path, pages: bool
) -> None:
    """A 154 MB table streamed into the cache in a fresh process, through
    the engine's page decoder or pyarrow's reader: the peak resident set
    (VmHWM, reset after setup) grows by far less than the table, because
    only a few batches (and with pyarrow, the row groups being decoded, one
    per reader, 3.8 MB each here) are in memory at a time."""
    import subprocess
    import sys

    x = pool(14, n=600_000, d=64)
    write_parts(tmp_path / "t", x, 2, 15_000)
    script = f"""
import numpy as np, pathlib, pyarrow.parquet
from zcore_fast.integrations import parquet as zp
zp.BATCH_ROWS, zp.STREAM_BUFFER = 4096, 1 << 20
zp.PAGE_DECODER = {pages}
table = zp.ParquetPool.open({str(tmp_path / "t")!r}, None, None)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
table.write_columns(pathlib.Path({str(tmp_path / "copy.npy")!r}), 2)
import sys; print(status("VmHWM") - base, file=sys.stderr)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    growth = int(out.stderr.split()[-1])
    assert growth < x.nbytes / 3, f"peak grew by {growth:,} bytes for a {x.nbytes:,}-byte table"
    np.testing.assert_array_equal(np.load(tmp_path / "copy.npy"), x)
