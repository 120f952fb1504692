"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*):
npy_file and raw_source for cargo-fuzz (fuzz/fuzz_targets), py_* for the
atheris targets (fuzz/python).

Run once from the repository root; the files are checked in. Crashing
inputs found later are added beside them as crash-<hash> and replayed by
`cargo test` (rust/fuzzing.rs) and pytest (tests/test_fuzz_corpus.py).
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "corpus"


def npy(array: np.ndarray, version: tuple[int, int] = (1, 0)) -> bytes:
    """`array` saved as .npy bytes in the given format version."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


def header_only(dict_text: str, version: int = 1, data: bytes = b"") -> bytes:
    """A hand-written header (for what numpy will not write) plus `data`."""
    body = (dict_text + "\n").encode("latin1")
    length = struct.pack("<H" if version == 1 else "<I", len(body))
    return b"\x93NUMPY" + bytes([version, 0]) + length + body + data


def npy_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3))
    seeds = {
        f"v{v}-{dt[1:]}le-{order}": npy(np.asarray(x, dtype=dt, order=order), version=(v, 0))
        for v in (1, 2, 3)
        for dt in ("<f2", "<f4", "<f8")
        for order in ("C", "F")
    }
    seeds.update(
        {
            "big-endian": npy(x.astype(">f4")),
            "object": npy(np.array([[1, "a"]], dtype=object)),
            "int64": npy(np.arange(6).reshape(3, 2)),
            "zero-d": npy(np.array(1.5, dtype="<f4")),
            "one-d": npy(np.arange(5, dtype="<f4")),
            "three-d": npy(np.zeros((2, 2, 2), dtype="<f4")),
            "zero-rows": npy(np.zeros((0, 4), dtype="<f4")),
            "zero-cols": npy(np.zeros((4, 0), dtype="<f4")),
            "one-row": npy(np.zeros((1, 4), dtype="<f4")),
            "nan-f16": npy(np.array([[1, np.nan], [2, 3], [0, 1]], dtype="<f2")),
            "inf-f16": npy(np.array([[1, 7e4], [2, 3], [0, 1]], dtype="<f4").astype("<f2")),
            "truncated": npy(x.astype("<f4"))[:-5],
            "overflowing-shape": header_only(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967297), }"
            ),
            "huge-header-length": b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'",
            "duplicate-row": npy(np.array([[1, 2], [1, 2], [3, 4]], dtype="<f4")),
        }
    )
    return seeds


def raw_seeds() -> dict[str, bytes]:
    def raw(flags: int, rows: int, cols: int, data: bytes, wide: bool = False) -> bytes:
        count = struct.pack("<Q", rows) if wide else struct.pack("<H", rows)
        return bytes([flags | (8 if wide else 0)]) + count + bytes([cols]) + data

    rng = np.random.default_rng(1)
    f32 = rng.normal(size=(6, 2)).astype("<f4").tobytes()
    f16 = rng.normal(size=(6, 2)).astype("<f2").tobytes()
    f64 = rng.normal(size=(6, 2)).astype("<f8").tobytes()
    return {
        "f32-c": raw(1, 6, 2, f32),
        "f32-f": raw(1 | 4, 6, 2, f32),
        "f16-c": raw(0, 6, 2, f16),
        "f64-f": raw(2 | 4, 6, 2, f64),
        "f32-c-scored": raw(1 | 16, 6, 2, f32),
        "f16-f-scored": raw(0 | 4 | 16, 6, 2, f16),
        "f64-c-scored": raw(2 | 16, 6, 2, f64),
        "short": raw(1, 300, 2, f32),
        "overflow": raw(2, 2**62, 4, f64, wide=True),
        "zero-cols": raw(1, 6, 0, b""),
    }


def sidecar_seeds() -> dict[str, bytes]:
    source = {
        "path": "/data/emb.npy",
        "size": 4096128,
        "mtime_ns": 1733390000000000000,
        "ino": 1234,
        "header_sha256": "0" * 64,
    }
    record = {
        "format": 1,
        "sources": [source],
        "rows": 1000,
        "cols": 1024,
        "dtype": "float32",
        "bytes": 4096128,
        "created": "2026-12-05T05:00:00+0000",
    }
    return {
        "record": json.dumps(record, indent=1).encode(),
        "two-sources": json.dumps({**record, "sources": [source, source]}).encode(),
        "float16": json.dumps({**record, "dtype": "float16"}).encode(),
        "rows-infinity": json.dumps(record).replace('"rows": 1000', '"rows": Infinity').encode(),
        "rows-bool": json.dumps({**record, "rows": True}).encode(),
        "old-format": json.dumps({**record, "format": 0}).encode(),
        "nested": b"[" * 100000,
    }


def record_seeds() -> dict[str, bytes]:
    config = {
        "source": {"sha256": "ab", "count": 3},
        "models": [{"model": "resnet18", "state_sha256": "cd", "dim": 512}],
        "dtype": "float16",
    }
    progress = {
        "format": "zcore-fast-embeddings/1",
        "config": config,
        "total": 3,
        "done": 2,
        "rows": 1,
        "skipped": [{"index": 0, "path": "a.jpg", "error": "truncated"}],
        "seconds": 1.5,
    }
    manifest = {"format": "zcore-fast-embeddings/1", "file": "emb.npy", "rows": 3, "config": config}
    return {
        "progress": json.dumps(progress, indent=1).encode(),
        "progress-done-past-total": json.dumps({**progress, "done": 9}).encode(),
        "progress-string-count": json.dumps({**progress, "rows": "1"}).encode(),
        "manifest": json.dumps(manifest).encode(),
        "manifest-config-list": json.dumps({**manifest, "config": []}).encode(),
        "manifest-models-strings": json.dumps({**manifest, "config": {"models": ["a"]}}).encode(),
        "utf16": json.dumps(progress).encode("utf-16"),
        "nested": b'{"a":' * 50000,
    }


def parquet_page_seeds() -> dict[str, bytes]:
    """Pages in the layout of rust/fuzzing.rs `parquet_page`: rows of d = 4,
    max_def 3; repetition levels 0,1,1,1 as a bit-packed group, definition
    levels as one run of 3."""
    rep = bytes([3, 0xEE])  # one bit-packed group: 0,1,1,1,0,1,1,1
    rep_runs = bytes([2, 0, 6, 1, 2, 0, 6, 1])  # the same as four RLE runs
    define = bytes([16, 3])  # a run of 8 threes

    def page(flags: int, rep: bytes, define: bytes, dictionary: bytes, values: bytes) -> bytes:
        width = 4 if flags & 16 else 2
        head = bytes([flags | 3, 2, 8, len(rep), len(define), len(dictionary) // width])
        return head + rep + define + dictionary + values

    dict16 = struct.pack("<2e", 1.0, -2.0)
    dict32 = struct.pack("<2f", 1.0, -2.0)
    packed = bytes([1, 3, 0x55])  # width 1, one group: 1,0,1,0,...
    return {
        "plain-f16": page(0, rep, define, b"", struct.pack("<8e", *range(8))),
        "plain-f32": page(16, rep_runs, define, b"", struct.pack("<8f", *range(8))),
        "dict-f16": page(32, rep, define, dict16, packed),
        "dict-f32-runs": page(48, rep_runs, define, dict32, bytes([1, 8, 1, 8, 0])),
        "dict-index-past": page(32, rep, define, dict16, bytes([2, 16, 3])),
        "null-level": page(0, rep, bytes([8, 3, 2, 2, 6, 3]), b"", bytes(16)),
        "short-row": page(0, bytes([2, 0, 14, 1]), define, b"", bytes(16)),
    }


def parquet_chunk_seeds() -> dict[str, bytes]:
    """Real column chunks written by pyarrow (every page kind it writes),
    in the layout of fuzz/python/parquet_chunk.py."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    seeds = {}
    for dtype, arrow in ((np.float16, pa.float16()), (np.float32, pa.float32())):
        x = rng.integers(0, 5, (6, 4)).astype(dtype)
        column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), arrow), 4)
        for name, options in {
            "dict-v1": {},
            "plain-v1": {"use_dictionary": False},
            "dict-v2": {"data_page_version": "2.0"},
            "pages": {"data_page_size": 16, "write_batch_size": 4, "use_dictionary": False},
        }.items():
            for codec in ("NONE", "SNAPPY"):
                out = io.BytesIO()
                pq.write_table(pa.table({"e": column}), out, compression=codec, **options)
                meta = pq.ParquetFile(io.BytesIO(out.getvalue())).metadata
                col = meta.row_group(0).column(0)
                start = col.data_page_offset
                if col.has_dictionary_page and col.dictionary_page_offset:
                    start = min(start, col.dictionary_page_offset)
                body = out.getvalue()[start : start + col.total_compressed_size]
                # max_def 3: a nullable list of nullable values
                flags = (codec == "SNAPPY") | (2 if dtype == np.float32 else 0) | 8
                flags |= 16 if name == "pages" else 0  # the overlapped stages
                key = f"{np.dtype(dtype).name}-{name}-{codec.lower()}"
                seeds[key] = bytes([flags, 3, 6, 0, 0]) + body
    return seeds


def main() -> None:
    for target, seeds in (
        ("npy_file", npy_seeds()),
        ("raw_source", raw_seeds()),
        ("py_npy_header", npy_seeds()),
        ("py_cache_sidecar", sidecar_seeds()),
        ("py_embed_records", record_seeds()),
        ("parquet_page", parquet_page_seeds()),
        ("py_parquet_chunk", parquet_chunk_seeds()),
    ):
        out = HERE / target
        out.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (out / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
