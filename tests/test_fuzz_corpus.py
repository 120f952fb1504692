"""The Python fuzz targets (fuzz/python) over their checked-in corpora: every
seed and every input that ever failed (kept as crash-*), without atheris.
Also the specific hostile records the targets were written against."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from zcore_fast.cache.entries import SourceStat, parse_sidecar
from zcore_fast.embedding.state import Progress, config_mismatch, parse_json_object
from zcore_fast.npyfile import SizeMismatchError, parse_header

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = ["npy_header", "cache_sidecar", "embed_records", "parquet_chunk"]


@pytest.fixture(scope="module", autouse=True)
def _fuzz_on_path():
    sys.path.insert(0, str(FUZZ / "python"))
    yield
    sys.path.remove(str(FUZZ / "python"))


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays(target: str) -> None:
    check = importlib.import_module(target).check
    files = sorted((FUZZ / "corpus" / f"py_{target}").iterdir())
    assert len(files) >= 5, "seed corpus missing"
    for f in files:
        check(f.read_bytes())


SIDE = {
    "format": 1,
    "sources": [
        {"path": "/a.npy", "size": 1, "mtime_ns": 2, "ino": 3, "header_sha256": "00"},
    ],
    "rows": 4,
    "cols": 5,
    "dtype": "float32",
    "bytes": 6,
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(SIDE).replace('"rows": 4', '"rows": Infinity'),  # int() overflowed
        json.dumps({**SIDE, "rows": True}),
        json.dumps({**SIDE, "rows": -1}),
        json.dumps({**SIDE, "dtype": "int8"}),
        json.dumps({**SIDE, "sources": [["/a.npy", 1, 2, 3, "00"]]}),
        json.dumps({**SIDE, "sources": [{**SIDE["sources"][0], "size": "1"}]}),
        "[" * 100_000,  # recursed out of the decoder
        "\xff\xfe",
        json.dumps([SIDE]),
    ],
)
def test_sidecar_refuses_foreign_records(text: str) -> None:
    assert parse_sidecar(text.encode("latin1")) is None


def test_sidecar_reads_its_own_record() -> None:
    record = parse_sidecar(json.dumps(SIDE).encode())
    assert record is not None and record["sources"][0].path == "/a.npy"


def _header(dict_text: str) -> bytes:
    body = (dict_text + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


@pytest.mark.parametrize(
    "dict_text",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (True, 3)}",
        "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': 6}",
        "{'descr': 7, 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}",
        "[1, 2]",
        "(" * 300 + ")" * 300,
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",  # cut off
    ],
)
def test_npy_header_refuses_malformed_fields(dict_text: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.npy: not an \.npy file \(.*\); save it with"):
        parse_header(_header(dict_text), "x.npy")


def test_npy_header_refuses_absurd_length() -> None:
    lead = b"\x93NUMPY\x02\x00" + (1 << 30).to_bytes(4, "little") + b"{"
    with pytest.raises(ValueError, match=r"\(a header of 1,073,741,824 bytes\)"):
        parse_header(lead, "x.npy")


def test_npy_header_refuses_a_shape_whose_size_overflows() -> None:
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (1 << 40, 1 << 40)}"
    with pytest.raises(SizeMismatchError, match="too large to exist"):
        parse_header(_header(text.replace("1 << 40", str(1 << 40))), "x.npy")


def test_one_parser_for_numpy_readers_and_the_cache(tmp_path: Path) -> None:
    """The column cache keys entries by the header bytes the shared parser
    returns, and refuses what the NumPy readers refuse."""
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((3, 2), np.float32))
    stat, header = SourceStat.of(str(good))
    assert header.raw == good.read_bytes()[: header.offset] and header.shape == (3, 2)
    assert stat.header_sha256 == hashlib.sha256(header.raw).hexdigest()
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(SizeMismatchError, match="file is truncated"):
        SourceStat.of(str(cut))


CONFIG = {"source": {"sha256": "a", "count": 1}, "models": [{"model": "m", "dim": 2}]}


@pytest.mark.parametrize(
    "change",
    [
        {"done": 5},  # more than total
        {"rows": 3},  # more rows than images done
        {"rows": "1"},
        {"total": True},
        {"config": []},
        {"skipped": [1]},
        {"seconds": "1"},
        {"extra": 1},
    ],
)
def test_progress_refuses_damaged_records(change: dict) -> None:
    good = {
        "format": "zcore-fast-embeddings/1",
        "config": CONFIG,
        "total": 4,
        "done": 2,
        "rows": 2,
        "skipped": [],
        "seconds": 0.5,
    }
    assert Progress.parse(dict(good), Path("p.json")).done == 2
    with pytest.raises(ValueError, match=r"^p\.json is damaged"):
        Progress.parse({**good, **change}, Path("p.json"))


@pytest.mark.parametrize(
    "old",
    [
        [],
        "x",
        None,
        {"source": []},
        {"source": CONFIG["source"], "models": ["a", 1]},
        {"source": CONFIG["source"], "models": [{"model": ["x"]}]},
    ],
)
def test_config_mismatch_answers_any_recorded_value(old: object) -> None:
    why = config_mismatch(old, CONFIG)
    assert isinstance(why, str) and why


def test_json_records_too_deep_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json_object(b'{"a":' * 100_000, Path("m.json"))
