"""Fuzz target: a Parquet column chunk of an embedding column through the
page walk (`integrations.parquet_pages`: the Thrift page headers, the
level split, decompression) and the engine's page decoder, over arbitrary
bytes.

Layout of an input: byte 0 picks snappy (bit 0, when pyarrow is there),
float32 values (bit 1), max_def - 1 (bits 2-3) and the overlapped
stages on threads (bit 4); byte 1 is d - 1
(modulo 16), byte 2 the chunk's value count in rows, byte 3 (signed) moves
the chunk's start and byte 4 shortens its size (both 0: the chunk is the
rest of the input, exactly).

Run: python fuzz/python/parquet_chunk.py fuzz/corpus/py_parquet_chunk -runs=10000000
"""

from __future__ import annotations

import os
import sys

import atheris_or_replay

with atheris_or_replay.instrumented(__name__ == "__main__"):
    import numpy as np
    from zcore_fast.integrations.parquet_pages import (
        Chunk,
        UnsupportedPageError,
        decode_chunk,
    )

try:
    import pyarrow as pa

    SNAPPY = pa.Codec("snappy")
except ImportError:  # the chunk is read as uncompressed
    SNAPPY = None


def check(data: bytes) -> None:
    """decode_chunk refuses the chunk (UnsupportedPageError) or hands out
    whole rows of d values, as many as the chunk says, and nothing else."""
    if len(data) < 5:
        return
    flags, d, rows = data[0], 1 + data[1] % 16, data[2]
    start, cut = int.from_bytes(data[3:4], "little", signed=True), data[4]
    bits = np.dtype("<u4" if flags & 2 else "<u2")
    body = data[5:]
    codec = SNAPPY if flags & 1 else None
    max_def = 1 + (flags >> 2) % 4
    chunk = Chunk(start, len(body) - cut, codec, bits, rows * d, max_def, 1)
    fd = os.memfd_create("chunk")
    try:
        os.write(fd, body)
        got: dict[int, np.ndarray] = {}
        try:

            def emit(first: int, block: np.ndarray) -> None:
                assert first not in got, f"rows from {first} emitted twice"
                got[first] = block.copy()

            decode_chunk(fd, chunk, d, 5, emit, overlap=bool(flags & 16))
        except UnsupportedPageError:
            return
    finally:
        os.close(fd)
    blocks = [got[first] for first in sorted(got)]
    assert all(b.dtype == bits and b.ndim == 2 and b.shape[1] == d for b in blocks)
    assert sorted(got) == [5 * i for i in range(len(got))], "blocks must tile the rows"
    assert sum(len(b) for b in blocks) == rows


if __name__ == "__main__":
    atheris_or_replay.main(check, sys.argv)
