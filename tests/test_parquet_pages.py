"""The engine's Parquet page decoder (integrations/parquet_pages.py and
rust/parquet_page.rs) against pyarrow's reader, the oracle, on fresh random
tables written every way pyarrow writes them; and its refusals, which send
a row group back to pyarrow."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from zcore_fast.integrations import parquet as zparquet
from zcore_fast.integrations.parquet import ParquetPool
from zcore_fast.integrations.parquet_pages import (
    Chunk,
    UnsupportedPageError,
    _decompress,
    chunk_of,
    decode_chunk,
    parse_page_header,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CODECS = ["NONE", "SNAPPY", "ZSTD", "GZIP", "BROTLI", "LZ4"]


def random_table(
    rng: np.random.Generator, dtype: type, n: int, d: int
) -> tuple[object, np.ndarray]:
    """A table of n rows of d values, few distinct values (so dictionaries
    stay dictionaries) or many (so pyarrow falls back to plain pages)."""
    distinct = int(rng.choice([3, 300, 100_000]))
    x = (rng.integers(0, distinct, (n, d)) * (100 / distinct) - 50).astype(dtype)
    arrow = {np.float16: pa.float16(), np.float32: pa.float32()}[dtype]
    element = pa.field("element", arrow, nullable=bool(rng.integers(2)))
    kind = rng.choice(["list", "large", "fixed"])
    values = pa.array(x.reshape(-1), type=arrow)
    if kind == "fixed":
        column = pa.FixedSizeListArray.from_arrays(values, type=pa.list_(element, d))
    else:
        offsets = np.arange(0, n * d + 1, d)
        cls = pa.LargeListArray if kind == "large" else pa.ListArray
        list_type = pa.large_list(element) if kind == "large" else pa.list_(element)
        column = cls.from_arrays(pa.array(offsets), values, type=list_type)
    ids = pa.array(np.arange(n))
    field = pa.field("embedding", column.type, nullable=bool(rng.integers(2)))
    schema = pa.schema([pa.field("id", pa.int64()), field])
    return pa.table([ids, column], schema=schema), x


def write_randomly(rng: np.random.Generator, table: object, path: Path) -> dict:
    options = {
        "compression": str(rng.choice(CODECS)),
        "use_dictionary": bool(rng.integers(4)),  # mostly the default
        "data_page_version": str(rng.choice(["1.0", "2.0"])),
        "data_page_size": int(rng.choice([64, 1000, 1 << 20])),  # rows over page bounds
        "dictionary_pagesize_limit": int(rng.choice([200, 1 << 20])),  # plain pages after dict
        "row_group_size": int(rng.integers(20, 400)),
        "write_batch_size": int(rng.choice([7, 1024])),
    }
    pq.write_table(table, path, **options)
    return options


def keep(got: dict[int, np.ndarray]) -> Callable[[int, np.ndarray], None]:
    """An `emit` for decode_chunk that keeps a copy of each block by its
    first row (writer threads emit blocks in any order)."""

    def emit(first: int, block: np.ndarray) -> None:
        assert first not in got
        got[first] = block.copy()

    return emit


def in_order(got: dict[int, np.ndarray]) -> np.ndarray:
    return np.concatenate([got[k] for k in sorted(got)])


def decoded(path: Path, d: int, block_rows: int, overlap: bool = False) -> tuple[np.ndarray, int]:
    """Every row group of `path` through the page decoder, in blocks of
    `block_rows`, its stages on threads of their own with `overlap`; (the
    rows' bits, the row groups it refused)."""
    meta = pq.ParquetFile(path).metadata
    blocks: list[np.ndarray] = []
    refused = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for g in range(meta.num_row_groups):
            got: dict[int, np.ndarray] = {}
            try:
                chunk = chunk_of(pa, meta, g, "embedding")
                decode_chunk(fd, chunk, d, block_rows, keep(got), overlap=overlap)
            except UnsupportedPageError:
                refused += 1
                continue
            firsts = sorted(got)
            assert firsts == [i * block_rows for i in range(len(got))]
            blocks.extend(got[first] for first in firsts)
    finally:
        os.close(fd)
    return np.concatenate(blocks) if blocks else np.empty((0, d)), refused


@pytest.mark.parametrize("seed", range(40))
def test_pages_decode_as_pyarrow_reads_them(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dtype = [np.float16, np.float32][seed % 2]
    n, d = int(rng.integers(1, 1_500)), int(rng.integers(1, 40))
    table, x = random_table(rng, dtype, n, d)
    path = tmp_path / "t.parquet"
    options = write_randomly(rng, table, path)
    if options["compression"] in ("LZ4", "BROTLI"):  # left to pyarrow (parquet_pages.CODECS)
        with pytest.raises(UnsupportedPageError, match="codec"):
            chunk_of(pa, pq.ParquetFile(path).metadata, 0, "embedding")
        return
    got, refused = decoded(path, d, int(rng.integers(1, 300)), bool(rng.integers(2)))
    assert refused == 0, options
    bits = np.dtype(f"u{x.itemsize}")
    want = zparquet.ParquetPool.open(path, "embedding", None).read_matrix()
    np.testing.assert_array_equal(got, want.view(bits), err_msg=str(options))
    np.testing.assert_array_equal(got, x.view(bits))


def test_nan_payloads_and_signed_zeros_keep_their_bits(tmp_path: Path) -> None:
    bits = np.array([0x7E01, 0xFE02, 0x8000, 0x0000, 0x7C00, 0xFC00, 0x0001, 0x3C00], np.uint16)
    x = np.tile(bits, 50).view(np.float16).reshape(100, 4)
    table = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    pq.write_table(table, tmp_path / "t.parquet")
    got, refused = decoded(tmp_path / "t.parquet", 4, 16)
    assert refused == 0
    np.testing.assert_array_equal(got, x.view(np.uint16))


@pytest.mark.parametrize(
    "rows",
    [
        [[1.0, 2.0], None, [3.0, 4.0]],  # a null row
        [[1.0, 2.0], [None, 2.0], [3.0, 4.0]],  # a null value
        [[1.0, 2.0], [], [3.0, 4.0, 5.0]],  # an empty row, a long one
        [[1.0, 2.0], [3.0], [3.0, 4.0, 5.0]],  # the count matches, the rows do not
    ],
)
def test_rows_it_cannot_take_are_refused(tmp_path: Path, rows: list) -> None:
    """The decoder refuses (so pyarrow reads the row group and names the
    row) even where the value count alone would pass."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"embedding": pa.array(rows * 50, pa.list_(pa.float32()))}), path)
    meta = pq.ParquetFile(path).metadata
    chunk = chunk_of(pa, meta, 0, "embedding")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(UnsupportedPageError):
            decode_chunk(fd, chunk, 2, 64, lambda first, b: None)
    finally:
        os.close(fd)
    with pytest.raises(ValueError, match=r"row 1 of .*t\.parquet"):
        zcore_fast.score(path, cache="always", cache_dir=tmp_path / "c", n_sample=100)


@pytest.mark.parametrize(
    ("codec", "overlap"), [("NONE", False), ("NONE", True), ("SNAPPY", True), ("GZIP", False),
                           ("ZSTD", True)]
)  # fmt: skip
def test_damaged_pages_are_refused_or_read_as_pyarrow_reads_them(
    tmp_path: Path, codec: str, overlap: bool
) -> None:
    """Bytes of the column chunk changed at random: the decoder refuses, or
    gives what pyarrow gives. It never raises anything else, and never
    accepts a page pyarrow refuses (a short page's missing bytes would
    otherwise become values)."""
    rng = np.random.default_rng(5)
    table, _ = random_table(rng, np.float16, 300, 8)
    clean = tmp_path / "clean.parquet"
    pq.write_table(table, clean, compression=codec, data_page_size=512)
    meta = pq.ParquetFile(clean).metadata
    chunk = chunk_of(pa, meta, 0, "embedding")
    data = clean.read_bytes()
    outcomes = {"refused": 0, "same": 0, "accepted what pyarrow refuses": 0}
    for trial in range(300):
        damaged = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = chunk.start + int(rng.integers(chunk.size))
            damaged[at] = int(rng.integers(256))
        path = tmp_path / f"d{trial}.parquet"
        path.write_bytes(bytes(damaged))
        got: dict[int, np.ndarray] = {}
        fd = os.open(path, os.O_RDONLY)
        try:
            decode_chunk(fd, chunk, 8, 1000, keep(got), overlap=overlap)
        except UnsupportedPageError:
            outcomes["refused"] += 1
            continue
        finally:
            os.close(fd)
            path.unlink()
        try:
            want = pq.read_table(pa.BufferReader(bytes(damaged)), columns=["embedding"])
        except Exception:
            outcomes["accepted what pyarrow refuses"] += 1
            continue
        flat = want.column(0).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        np.testing.assert_array_equal(in_order(got).reshape(-1), flat.view(np.uint16))
        outcomes["same"] += 1
    assert outcomes["accepted what pyarrow refuses"] == 0, outcomes
    assert outcomes["refused"] > 15, outcomes
    if codec == "NONE":  # compressed pages rarely survive a changed byte
        assert outcomes["same"] > 100, outcomes


@pytest.mark.parametrize("codec", ["snappy", "zstd", "gzip"])
def test_pages_that_decompress_to_another_length_are_refused(codec: str) -> None:
    """pyarrow's codecs may hand back a buffer of the length asked for
    whatever came out: the true length is checked."""
    data = np.random.default_rng(0).integers(0, 5, 5_000, dtype=np.uint8).tobytes()
    raw = pa.Codec(codec).compress(data, asbytes=True)
    chunk = Chunk(0, 1, "gzip" if codec == "gzip" else pa.Codec(codec), np.dtype("<u2"), 0, 3, 1)
    assert _decompress(chunk, raw, len(data)).tobytes() == data
    for size in (len(data) + 10, len(data) - 10, 0):
        with pytest.raises(UnsupportedPageError):
            _decompress(chunk, raw, size)


def test_chunks_outside_the_file_and_second_dictionaries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    column = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(40, np.float16)), 4)
    pq.write_table(pa.table({"e": column}), path, compression="NONE")
    chunk = chunk_of(pa, pq.ParquetFile(path).metadata, 0, "e")
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, size in ((len(data) + 5, 100), (-3, 100), (chunk.start, -1)):
            moved = Chunk(start, size, *astuple(chunk)[2:])
            with pytest.raises(UnsupportedPageError, match="outside its file"):
                decode_chunk(fd, moved, 4, 8, lambda first, b: None)
    finally:
        os.close(fd)
    # The dictionary page twice, then the data pages.
    body = data[chunk.start : chunk.start + chunk.size]
    first = parse_page_header(body)
    assert first.kind == 2
    page = body[: first.length + first.compressed]
    twice = tmp_path / "twice.bin"
    twice.write_bytes(page + body)
    fd = os.open(twice, os.O_RDONLY)
    try:
        with pytest.raises(UnsupportedPageError, match="second dictionary"):
            decode_chunk(fd, Chunk(0, len(page + body), *astuple(chunk)[2:]), 4, 8, keep({}))
    finally:
        os.close(fd)


@pytest.mark.parametrize("threads", [1, 4])
def test_a_refusal_part_way_rewrites_the_row_group_with_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """Every 7th page refused after earlier blocks were written: pyarrow
    writes the row group again, the copy is the same, and progress never
    passes the pool's size and ends at it. With 4 threads for 3 row groups
    the decoder's stages overlap (a refusal raised on its page thread)."""
    from zcore_fast import _native

    x = np.random.default_rng(4).standard_normal((900, 16)).astype(np.float16)
    path = tmp_path / "t.parquet"
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 16)
    pq.write_table(pa.table({"e": column}), path, row_group_size=300, data_page_size=1024)
    decode = _native.decode_parquet_page
    calls = [0]

    def flaky(*args: object, **kwargs: object) -> int:
        calls[0] += 1
        if calls[0] % 7 == 0:
            raise ValueError("injected")
        return decode(*args, **kwargs)

    monkeypatch.setattr(_native, "decode_parquet_page", flaky)
    monkeypatch.setattr(zparquet, "BATCH_ROWS", 32)
    seen: list[tuple[int, int]] = []
    pool = ParquetPool.open(path, None, None)
    pool.write_columns(tmp_path / "c.npy", threads, lambda done, total: seen.append((done, total)))
    assert calls[0] >= 7
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), x)
    assert max(done for done, _ in seen) <= 900 and seen[-1] == (900, 900)
    np.testing.assert_array_equal(pool.read_matrix(threads), x)


def test_page_headers_cut_short_or_malformed(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"embedding": pa.array([[1.0, 2.0]] * 10, pa.list_(pa.float32()))}), path
    )
    chunk = chunk_of(pa, pq.ParquetFile(path).metadata, 0, "embedding")
    head = path.read_bytes()[chunk.start : chunk.start + chunk.size]
    header = parse_page_header(head)
    assert header.kind in (0, 2) and header.compressed > 0
    for cut in range(header.length):
        with pytest.raises(EOFError):
            parse_page_header(head[:cut])
    for bad in [b"\x1c" * 20 + b"\x00" * 20, b"\x15\x04" + b"\x19\xfc" * 30, b"\x00"]:
        with pytest.raises((EOFError, UnsupportedPageError)):
            parse_page_header(bad)
    with pytest.raises(UnsupportedPageError, match="nested too deep"):
        parse_page_header(b"\x19" * 5_000)  # lists of lists of ...
    # Required fields missing or of another type, as pyarrow refuses them:
    # type 0 (a data page), sizes 10 and 10, then a data page header with
    # only its value count; then the same with the count as a string.
    head = b"\x15\x00\x15\x14\x15\x14\x2c\x15\x04\x00\x00"
    with pytest.raises(UnsupportedPageError, match="field 2"):
        parse_page_header(head)
    with pytest.raises(UnsupportedPageError, match="field 1"):
        parse_page_header(head.replace(b"\x2c\x15\x04", b"\x2c\x18\x01x"))


def test_refused_row_groups_fall_back_to_pyarrow_with_the_same_copy(tmp_path: Path) -> None:
    """Parts the decoder takes (snappy, zstd) and refuses (brotli) build the
    same cache as pyarrow alone; progress ends at the pool's size."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((900, 16)).astype(np.float16)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, codec in enumerate(["SNAPPY", "BROTLI", "ZSTD"]):
        rows = x[i * 300 : (i + 1) * 300]
        column = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 16)
        pq.write_table(pa.table({"e": column}), folder / f"p{i}.parquet", compression=codec,
                       row_group_size=128)  # fmt: skip
    pool = ParquetPool.open(folder, None, None)
    seen: list[tuple[int, int]] = []
    pool.write_columns(tmp_path / "a.npy", 2, lambda done, total: seen.append((done, total)))
    zparquet.PAGE_DECODER = False
    try:
        pool.write_columns(tmp_path / "b.npy", 2)
    finally:
        zparquet.PAGE_DECODER = True
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
    np.testing.assert_array_equal(a, x)
    assert seen[-1] == (900, 900)
    # The in-memory read takes the same paths.
    np.testing.assert_array_equal(pool.read_matrix(2).view(np.uint16), x.view(np.uint16))


def test_row_groups_the_decoder_takes_do_not_count_against_pyarrows_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a budget smaller than one decoded row group, pyarrow's reader
    gets one thread; the page decoder, which holds a block, all of them."""
    x = np.random.default_rng(6).standard_normal((2_000, 32)).astype(np.float16)
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 32)
    for codec in ("SNAPPY", "BROTLI"):
        pq.write_table(pa.table({"e": column}), tmp_path / f"{codec}.parquet", compression=codec)
    # An encoding the decoder does not take, seen in the chunk's metadata.
    column32 = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1).astype(np.float32)), 32)
    split = tmp_path / "SPLIT.parquet"
    pq.write_table(
        pa.table({"e": column32}), split, use_dictionary=False, use_byte_stream_split=True
    )
    with pytest.raises(UnsupportedPageError, match="BYTE_STREAM_SPLIT"):
        chunk_of(pa, pq.ParquetFile(split).metadata, 0, "e")
    monkeypatch.setattr(zparquet, "MEMORY_BUDGET", 150_000)  # a row group is 128,000 bytes
    monkeypatch.setattr(zparquet, "BATCH_ROWS", 64)  # a block 4,096 bytes
    readers = {
        name: zparquet._readers(
            pa, pq, ParquetPool.open(tmp_path / f"{name}.parquet", None, None), 4
        )
        for name in ("SNAPPY", "BROTLI", "SPLIT")
    }
    assert readers == {"SNAPPY": 4, "BROTLI": 1, "SPLIT": 1}
    np.testing.assert_array_equal(ParquetPool.open(split, None, None).read_matrix(2), x)
