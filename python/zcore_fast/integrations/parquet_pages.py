"""A row group's embedding column decoded page by page, without pyarrow's
column reader.

Why: a float16 column written with pyarrow's defaults is dictionary
encoded, and pyarrow decodes 2-byte dictionary values at about 50 M values
a second per core, a quarter of its plain decode, so such a file took
twice the `.npy` path's time to reach the column cache. Here the pages are
read with `os.pread`, decompressed with pyarrow's codecs (which release
the GIL) and decoded by the Rust engine (`_native.decode_parquet_page`).

Only the clean case is taken: a list of float16 (FIXED_LEN_BYTE_ARRAY(2)
with the Float16 logical type) or float (FLOAT) values, one level of
lists, no nulls, every row `d` values long, and a codec pyarrow has. For
anything else `UnsupportedPageError` is raised and the caller reads the row group
with pyarrow, whose errors name the row.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np

from zcore_fast import _native

#: Parquet's codecs (as pyarrow's metadata spells them) decompressed here,
#: each one whose true decompressed length is checked against the page
#: header: snappy's stream states it, zstd's decoder checks it (pyarrow),
#: gzip is inflated by zlib, which returns exactly what there is. pyarrow's
#: brotli and LZ4 (`pa.Codec.decompress`) hand back a buffer of the size
#: asked for whatever came out, so a short page would pass with garbage in
#: its tail: those files are left to pyarrow's reader, which checks.
CODECS = {"SNAPPY": "snappy", "ZSTD": "zstd", "GZIP": "gzip"}
#: Page types and value encodings of the Parquet format (parquet.thrift).
DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
PLAIN, PLAIN_DICTIONARY, RLE, RLE_DICTIONARY = 0, 2, 3, 8
#: Bytes first read for a page header; a header with long statistics is
#: read again whole.
HEADER_READ = 1 << 12
#: Decoded pages queued ahead of the blocks being written (about 1 MB each
#: at pyarrow's default page size).
PAGES_AHEAD = 2
#: Largest page taken (decompressed): a header claiming more is refused
#: before anything that size is allocated.
MAX_PAGE = 1 << 30
#: Nesting depth of Thrift structs accepted in a page header (it has 3).
MAX_DEPTH = 8


class UnsupportedPageError(Exception):
    """The chunk is not one this decoder takes; read it with pyarrow."""


@dataclass(frozen=True)
class Chunk:
    """Where a row group's embedding column lies in its file, and how it is
    stored."""

    start: int
    size: int
    codec: Any  # pyarrow.Codec, "gzip" (zlib's), or None when uncompressed
    bits: np.dtype[Any]  # uint16 (float16) or uint32 (float32)
    values: int
    max_def: int
    max_rep: int


def chunk_of(pa: Any, meta: Any, group: int, column: str) -> Chunk:
    """The embedding column's chunk in row group `group` of a file's
    metadata; raises UnsupportedPageError when it is not one this decoder takes."""
    leaves = [
        i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == column
    ]
    if len(leaves) != 1:
        raise UnsupportedPageError("the column has more than one leaf")
    leaf = meta.schema.column(leaves[0])
    chunk = meta.row_group(group).column(leaves[0])
    bits: np.dtype[Any]
    if leaf.physical_type == "FLOAT":
        bits = np.dtype("<u4")
    elif (
        leaf.physical_type == "FIXED_LEN_BYTE_ARRAY"
        and leaf.length == 2
        and leaf.logical_type.type == "FLOAT16"
    ):
        bits = np.dtype("<u2")
    else:
        raise UnsupportedPageError(f"values of type {leaf.physical_type}")
    if leaf.max_repetition_level != 1 or leaf.max_definition_level < 1:
        raise UnsupportedPageError("not one level of lists")
    # Encodings the decoder does not take (BYTE_STREAM_SPLIT, DELTA_*,
    # BIT_PACKED levels) are refused here, before the caller counts on it.
    others = set(chunk.encodings) - {"PLAIN", "PLAIN_DICTIONARY", "RLE", "RLE_DICTIONARY"}
    if others:
        raise UnsupportedPageError(f"encodings {', '.join(sorted(others))}")
    if chunk.compression == "UNCOMPRESSED":
        codec = None
    elif chunk.compression == "GZIP":
        codec = "gzip"  # zlib's, see _decompress
    elif chunk.compression in CODECS and pa.Codec.is_available(CODECS[chunk.compression]):
        codec = pa.Codec(CODECS[chunk.compression])
    else:
        raise UnsupportedPageError(f"codec {chunk.compression}")
    # As Arrow's own reader: the dictionary page, where there is one, is
    # the chunk's first.
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and (chunk.dictionary_page_offset or 0) > 0:
        start = min(start, chunk.dictionary_page_offset)
    return Chunk(
        start,
        chunk.total_compressed_size,
        codec,
        bits,
        chunk.num_values,
        leaf.max_definition_level,
        leaf.max_repetition_level,
    )


def decode_chunk(
    fd: int,
    chunk: Chunk,
    d: int,
    block_rows: int,
    emit: Callable[[int, np.ndarray], None],
    stop: Callable[[], bool] = lambda: False,
    overlap: bool = False,
) -> None:
    """Decodes `chunk` from the open file `fd` and hands its rows to
    `emit(first, block)` in row-major blocks of `block_rows` rows (the last
    one shorter), as unsigned integers holding the values' bits; `first` is
    the block's first row in the chunk, and the block is reused once `emit`
    returns. Raises UnsupportedPageError on anything this decoder does not
    take (the caller then reads the chunk with pyarrow, so rows already
    emitted are written again). Returns early once `stop()` is true
    (checked between blocks).

    With `overlap`, pages are read, decompressed and decoded on a thread of
    their own, PAGES_AHEAD ahead, and blocks are emitted on another, while
    this thread copies values into blocks: each stage releases the GIL for
    its heavy part, so one chunk keeps several cores busy (worth it when
    fewer chunks than cores are decoded at once; measured slower when every
    core already decodes a chunk of its own)."""
    with ExitStack() as stack:
        pages: Iterable[np.ndarray] = _page_values(fd, chunk, d)
        if overlap:
            pages = stack.enter_context(_ReadAhead(pages))
        blocks = stack.enter_context(_Blocks(chunk.bits, d, block_rows, emit, overlap))
        block, filled = blocks.take(), 0  # values in `block`
        for values in pages:
            taken = 0
            while taken < len(values):
                k = min(len(values) - taken, block.size - filled)
                block[filled : filled + k] = values[taken : taken + k]
                filled, taken = filled + k, taken + k
                if filled == block.size:
                    if stop():
                        return
                    blocks.emit(block, block_rows)
                    block, filled = blocks.take(), 0
        # _page_values checked that the chunk ends on a row boundary.
        if filled and not stop():
            blocks.emit(block, filled // d)


class _ReadAhead:
    """The items of an iterator, produced on a thread of its own up to
    PAGES_AHEAD ahead of the consumer; its exception is raised to the
    consumer in turn. Leaving the context stops and joins the thread."""

    def __init__(self, items: Iterable[np.ndarray]) -> None:
        # The items, then one last: None at the end, or the exception.
        self.queue: queue.Queue[np.ndarray | BaseException | None] = queue.Queue(PAGES_AHEAD)
        self.quit = threading.Event()
        self.ended = False  # the last item was taken
        self.thread = threading.Thread(
            target=self._produce, args=(items,), name="zcore-parquet-pages", daemon=True
        )
        self.thread.start()

    def _produce(self, items: Iterable[np.ndarray]) -> None:
        last: BaseException | None = None
        try:
            for item in items:
                if self.quit.is_set():
                    return
                self.queue.put(item)
        except BaseException as e:  # raised again on the consuming thread
            last = e
        finally:
            self.queue.put(last)

    def __iter__(self) -> Iterator[np.ndarray]:
        while not self.ended:
            item = self.queue.get()
            if isinstance(item, np.ndarray):
                yield item
                continue
            self.ended = True
            if item is not None:
                raise item

    def __enter__(self) -> _ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit.set()
        while not self.ended:  # unblocks the producer, which then ends
            self.ended = not isinstance(self.queue.get(), np.ndarray)
        self.thread.join()


class _Blocks:
    """Block buffers and their emission: inline, or (`threaded`) on one
    writer thread with a second buffer filling meanwhile; taking a buffer
    waits for its write to end, which bounds the memory."""

    def __init__(
        self,
        bits: np.dtype[Any],
        d: int,
        block_rows: int,
        emit: Callable[[int, np.ndarray], None],
        threaded: bool,
    ) -> None:
        self.d, self.emit_fn, self.row = d, emit, 0  # the next block's first row
        self.free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(2 if threaded else 1):
            self.free.put(np.empty(block_rows * d, dtype=bits))
        self.pool = ThreadPoolExecutor(1, "zcore-parquet-writes") if threaded else None
        self.pending: deque[Future[None]] = deque()

    def take(self) -> np.ndarray:
        """A free buffer; raises the error of a write that failed."""
        while self.pending and self.pending[0].done():
            self.pending.popleft().result()
        return self.free.get()

    def emit(self, block: np.ndarray, rows: int) -> None:
        """Emits the first `rows` rows of `block`."""
        if self.pool is None:
            self._write(self.row, block, rows)
        else:
            self.pending.append(self.pool.submit(self._write, self.row, block, rows))
        self.row += rows

    def _write(self, row: int, block: np.ndarray, rows: int) -> None:
        try:
            self.emit_fn(row, block[: rows * self.d].reshape(rows, self.d))
        finally:
            self.free.put(block)

    def __enter__(self) -> _Blocks:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if kind is None:  # a write's error, unless another is on its way
            for future in self.pending:
                future.result()


def _page_values(fd: int, chunk: Chunk, d: int) -> Iterator[np.ndarray]:
    """The values of each data page of `chunk` in turn (the bits, one per
    level), after checking that rows are `d` values long and that the
    chunk ends on a row boundary."""
    col = 0  # where in its row the next value falls
    dictionary = np.empty(0, dtype=chunk.bits)
    have_dictionary = False
    at, seen = chunk.start, 0
    end = min(chunk.start + chunk.size, os.fstat(fd).st_size)  # the footer may lie
    if chunk.start < 0 or end <= chunk.start:
        raise UnsupportedPageError("a column chunk outside its file")
    while seen < chunk.values:
        header, raw = _read_page(fd, at, end)
        at += header.length + header.compressed
        if header.kind == DICTIONARY_PAGE:
            if have_dictionary:
                raise UnsupportedPageError("a second dictionary page")
            have_dictionary = True
            body = _decompress(chunk, raw, header.uncompressed)
            if header.encoding not in (PLAIN, PLAIN_DICTIONARY):
                raise UnsupportedPageError(f"a dictionary page in encoding {header.encoding}")
            if header.values * chunk.bits.itemsize > len(body):
                raise UnsupportedPageError("a dictionary page shorter than its values")
            # A copy: the engine reads it as aligned 2- or 4-byte values.
            dictionary = body[: header.values * chunk.bits.itemsize].view(chunk.bits).copy()
            continue
        if header.kind == INDEX_PAGE:
            continue  # no values
        if header.kind not in (DATA_PAGE, DATA_PAGE_V2):
            raise UnsupportedPageError(f"a page of type {header.kind}")
        if not header.levels_rle:
            raise UnsupportedPageError("levels in the deprecated BIT_PACKED encoding")
        rep, define, values = _split_levels(chunk, header, raw)
        if header.encoding in (PLAIN_DICTIONARY, RLE_DICTIONARY):
            encoded = True
        elif header.encoding == PLAIN:
            encoded = False
        else:
            raise UnsupportedPageError(f"values in encoding {header.encoding}")
        seen += header.values
        if seen > chunk.values:
            raise UnsupportedPageError("pages hold more values than the chunk")
        out = np.empty(header.values, dtype=chunk.bits)
        try:
            col = _native.decode_parquet_page(
                rep, define, values, encoded, dictionary, out,
                d=d, max_def=chunk.max_def, max_rep=chunk.max_rep, first=col,
            )  # fmt: skip
        except ValueError as e:
            raise UnsupportedPageError(str(e)) from None
        if seen == chunk.values and col != 0:
            raise UnsupportedPageError("the chunk ends inside a row")
        yield out


@dataclass(frozen=True)
class PageHeader:
    """What the decoder needs of a Parquet PageHeader."""

    length: int  # bytes of the header itself
    kind: int
    uncompressed: int
    compressed: int
    values: int
    encoding: int
    # Data page v2 only: level bytes (never compressed) and whether the
    # values are compressed.
    rep_bytes: int = 0
    def_bytes: int = 0
    values_compressed: bool = True
    # Data page v1: both levels in the RLE hybrid encoding (not BIT_PACKED).
    levels_rle: bool = True


def _read_page(fd: int, at: int, end: int) -> tuple[PageHeader, bytes]:
    """The page header at `at` and the page's (compressed) body."""
    want = min(HEADER_READ, end - at)
    while True:
        head = os.pread(fd, want, at)
        try:
            header = parse_page_header(head)
            break
        except EOFError:
            if want >= end - at or len(head) < want:
                raise UnsupportedPageError("a page header past the column chunk") from None
            want = min(want * 16, end - at)
    if at + header.length + header.compressed > end:
        raise UnsupportedPageError("a page past the column chunk")
    body = head[header.length : header.length + header.compressed]
    if len(body) < header.compressed:
        body += os.pread(fd, header.compressed - len(body), at + len(head))
    if len(body) != header.compressed:
        raise UnsupportedPageError("the file ends inside a page")
    return header, body


def _decompress(chunk: Chunk, raw: bytes, size: int) -> np.ndarray:
    """`raw` decompressed, as a uint8 array; refused unless exactly `size`
    bytes came out (see CODECS)."""
    out: Any
    try:
        if chunk.codec is None:
            out = raw
        elif chunk.codec == "gzip":
            inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header
            out = inflate.decompress(raw, size + 1)
            if inflate.unconsumed_tail or inflate.unused_data or not inflate.eof:
                raise UnsupportedPageError("a gzip page of another length than its header says")
        else:
            if chunk.codec.name == "snappy" and _uleb128(raw) != size:
                raise UnsupportedPageError("a snappy page of another length than its header says")
            out = chunk.codec.decompress(raw, decompressed_size=size)
    except (zlib.error, ValueError, OSError) as e:
        # pyarrow's ArrowInvalid and ArrowIOError derive from ValueError and
        # OSError (UnsupportedPageError is neither, so it passes through).
        raise UnsupportedPageError(f"a page that does not decompress ({e})") from None
    array = np.frombuffer(out, dtype=np.uint8)
    if len(array) != size:
        raise UnsupportedPageError("a page of another size than its header says")
    return array


def _uleb128(buf: bytes) -> int:
    """The unsigned varint at the start of `buf` (-1 when cut off)."""
    value = 0
    for i, b in enumerate(buf[:10]):
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value
    return -1


def _split_levels(
    chunk: Chunk, header: PageHeader, raw: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A data page's (repetition levels, definition levels, values)."""
    if header.kind == DATA_PAGE_V2:
        levels = header.rep_bytes + header.def_bytes
        if levels > len(raw) or levels > header.uncompressed:
            raise UnsupportedPageError("levels past the page")
        head = np.frombuffer(raw, dtype=np.uint8, count=levels)
        rest = raw[levels:]
        if header.values_compressed:
            values = _decompress(chunk, rest, header.uncompressed - levels)
        else:
            values = np.frombuffer(rest, dtype=np.uint8)
        return head[: header.rep_bytes], head[header.rep_bytes :], values
    body = _decompress(chunk, raw, header.uncompressed)
    at, parts = 0, []
    for _ in range(2):  # v1: repetition then definition levels, each length-prefixed
        if at + 4 > len(body):
            raise UnsupportedPageError("levels past the page")
        length = int.from_bytes(body[at : at + 4].tobytes(), "little")
        if at + 4 + length > len(body):
            raise UnsupportedPageError("levels past the page")
        parts.append(body[at + 4 : at + 4 + length])
        at += 4 + length
    return parts[0], parts[1], body[at:]


def parse_page_header(buf: bytes) -> PageHeader:
    """A Parquet PageHeader (Thrift compact protocol) at the start of `buf`.
    Raises EOFError when `buf` ends inside it, UnsupportedPageError when it is not
    a valid header (a required field missing or of another type, as
    pyarrow's parser refuses it)."""
    reader = _Compact(buf)
    fields = reader.struct(0)
    kind, uncompressed, compressed = _i32s(fields, (1, 2, 3), "page header")
    if not (0 <= uncompressed <= MAX_PAGE and 0 <= compressed <= MAX_PAGE):
        raise UnsupportedPageError(f"a page of {uncompressed:,} bytes")
    if kind == INDEX_PAGE:
        return PageHeader(reader.at, kind, uncompressed, compressed, 0, 0)
    sub = {DATA_PAGE: 5, DICTIONARY_PAGE: 7, DATA_PAGE_V2: 8}.get(kind)
    if sub is None:
        raise UnsupportedPageError(f"a page of type {kind}")
    inner = fields.get(sub)
    if not isinstance(inner, dict):
        raise UnsupportedPageError(f"a page of type {kind} without its header")
    rep = define = 0
    compressed_values = rle = True
    if kind == DATA_PAGE_V2:
        values, _, _, encoding, define, rep = _i32s(inner, range(1, 7), "data page v2")
        compressed_values = inner.get(7, True)
        if not isinstance(compressed_values, bool):
            raise UnsupportedPageError("a data page v2 header with a malformed is_compressed")
    elif kind == DATA_PAGE:
        values, encoding, def_encoding, rep_encoding = _i32s(inner, range(1, 5), "data page")
        rle = def_encoding == RLE and rep_encoding == RLE
    else:
        values, encoding = _i32s(inner, (1, 2), "dictionary page")
    if values < 0 or rep < 0 or define < 0:
        raise UnsupportedPageError("a page header with negative counts")
    return PageHeader(
        reader.at,
        kind,
        uncompressed,
        compressed,
        values,
        encoding,
        rep,
        define,
        compressed_values,
        rle,
    )


def _i32s(fields: dict[int, Any], ids: Any, what: str) -> list[int]:
    """The required i32 fields `ids` of a Thrift struct, in order."""
    out = []
    for i in ids:
        v = fields.get(i)
        if type(v) is not int or not -(1 << 31) <= v < 1 << 31:
            raise UnsupportedPageError(f"a {what} header without a valid field {i}")
        out.append(v)
    return out


class _Compact:
    """A reader of the Thrift compact protocol: structs become dicts of
    field id to value (ints, bools, bytes, lists, dicts)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.buf):
            raise EOFError
        b = self.buf[self.at]
        self.at += 1
        return b

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise UnsupportedPageError("a varint of more than 64 bits")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, kind: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise UnsupportedPageError("Thrift values nested too deep")
        if kind in (1, 2):  # a bool in a list (in a struct it is the field's type)
            return self.byte() == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.skip(8)
            return None
        if kind == 8:
            return self.skip(self.varint())
        if kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            return [self.value(head & 0x0F, depth + 1) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            return [
                (self.value(types >> 4, depth + 1), self.value(types & 0x0F, depth + 1))
                for _ in range(size)
            ]
        if kind == 12:
            return self.struct(depth + 1)
        raise UnsupportedPageError(f"a Thrift value of type {kind}")

    def skip(self, n: int) -> bytes:
        if self.at + n > len(self.buf):
            raise EOFError
        out = self.buf[self.at : self.at + n]
        self.at += n
        return out

    def struct(self, depth: int) -> dict[int, Any]:
        if depth > MAX_DEPTH:
            raise UnsupportedPageError("Thrift structs nested too deep")
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == 0:
                return fields
            delta = head >> 4
            last = last + delta if delta else self.zigzag()
            if kind in (1, 2):
                fields[last] = kind == 1
            else:
                fields[last] = self.value(kind, depth)
