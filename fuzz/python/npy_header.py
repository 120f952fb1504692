"""Fuzz target: the .npy header parser (`npyfile.parse_header`, the only one on
the Python side: the NumPy readers and the column cache both use it) over
arbitrary leading bytes of a file.

Run: python fuzz/python/npy_header.py fuzz/corpus/py_npy_header -runs=10000000
(`pip install ".[fuzz]"` brings atheris). `check` is also replayed over the
corpus by tests/test_fuzz_corpus.py.
"""

from __future__ import annotations

import sys

import atheris_or_replay

with atheris_or_replay.instrumented(__name__ == "__main__"):
    from zcore_fast.npyfile import parse_header


def check(data: bytes) -> None:
    """Refused with ValueError, or a header that lies inside `data`."""
    try:
        header = parse_header(data, "fuzz.npy")
    except ValueError as e:
        assert str(e).startswith("fuzz.npy: "), e
        return
    assert header.raw == data[: header.offset]
    assert 0 <= header.nbytes < 1 << 63
    assert all(isinstance(n, int) and n >= 0 for n in header.shape)
    assert isinstance(header.fortran_order, bool)
    assert header.dtype.itemsize >= 0


if __name__ == "__main__":
    atheris_or_replay.main(check, sys.argv)
