"""Fuzz target: the column cache's record reader (`cache.entries.parse_sidecar`)
over arbitrary bytes.

Run: python fuzz/python/cache_sidecar.py fuzz/corpus/py_cache_sidecar -runs=10000000
"""

from __future__ import annotations

import sys

import atheris_or_replay

with atheris_or_replay.instrumented(__name__ == "__main__"):
    from zcore_fast.cache.entries import SourceStat, parse_sidecar


def check(data: bytes) -> None:
    """None, or a record whose every field has the type the cache relies on."""
    record = parse_sidecar(data)
    if record is None:
        return
    assert all(isinstance(s, SourceStat) for s in record["sources"])
    assert all(isinstance(s.path, str) and isinstance(s.size, int) for s in record["sources"])
    assert all(type(record[k]) is int and record[k] >= 0 for k in ("rows", "cols", "bytes"))
    assert record["dtype"] in ("float16", "float32")


if __name__ == "__main__":
    atheris_or_replay.main(check, sys.argv)
