"""Opening .npy files that nobody vouches for, from Python.

The Rust engine parses and checks .npy files itself. The NumPy code paths
(the methods other than ZCore, `evaluate`, `plot`, labels files) open them
with `open_npy`, which checks the header before NumPy sees it, so that a
hostile or damaged file gives one clear error instead of whatever NumPy's
loader raises (a tokenizer error, EOFError, a pickle hint for a text file,
a multi-gigabyte header read, an overflow warning): the same refusals, with
the same words where the engine has them.
"""

from __future__ import annotations

import ast
import math
import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np

MAGIC = b"\x93NUMPY"
#: Headers longer than this are refused before they are read (NumPy's own
#: limit for files it does not trust; numpy.save writes under 200 bytes).
MAX_HEADER = 10_000
#: Magic, version and header length: at most 12 bytes.
_PREFIX_MAX = 12
#: The largest byte size an array can have (isize::MAX, as in the engine).
_MAX_BYTES = (1 << 63) - 1


class SizeMismatchError(ValueError):
    """A well-formed header whose data the file cannot hold: a shape whose
    byte size overflows, or a truncated file."""


@dataclass(frozen=True)
class NpyHeader:
    """A checked .npy header."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    #: Where the data starts.
    offset: int
    #: Bytes of data the header promises (for an object dtype, whose data is
    #: a pickle of any length: the bytes after the header).
    nbytes: int
    #: The header as stored, magic bytes up to the data (the column cache
    #: keys its entries by its hash).
    raw: bytes


def read_header(path: str, name: str | None = None, what: str = "it") -> NpyHeader:
    """The header of the .npy file at `path`, checked against the file size.

    Errors name the file as `name` (default `path`) and say what to do
    ("save `what` with numpy.save"):
    FileNotFoundError for a missing file, ValueError for a directory, a file
    that is not .npy (empty, wrong magic bytes, a damaged or absurd header),
    a shape whose byte size overflows, or data shorter than the header
    promises (`SizeMismatchError`, a ValueError). Never another exception type.
    """
    name = path if name is None else name
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file; check the path")
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory, not an .npy file")
    try:
        with open(path, "rb") as handle:
            # Never more than the longest header allowed: an absurd length
            # field is refused, not read.
            lead = handle.read(_PREFIX_MAX + MAX_HEADER)
            size = os.fstat(handle.fileno()).st_size
    except OSError as e:
        raise ValueError(
            f"{name}: cannot be read ({e.strerror or e}); check the file and its permissions"
        ) from None
    header = parse_header(lead, name, what, size=size)
    if not header.dtype.hasobject and size - header.offset < header.nbytes:
        raise SizeMismatchError(
            f"{name}: file is truncated: header promises {header.nbytes} bytes of data, file "
            f"holds {max(0, size - header.offset)}; re-create the file"
        )
    return header


def parse_header(lead: bytes, name: str, what: str = "it", size: int | None = None) -> NpyHeader:
    """The header at the start of `lead`, a .npy file's first bytes (at
    least up to its data, or the whole file when shorter); `size` is the
    file's size (default len(lead)). The one .npy header parser on the
    Python side: the bytes come from files nobody vouches for, so every
    field is checked, and anything but a well-formed header with a shape
    whose byte size fits in 63 bits is a ValueError naming `name`; no other
    exception escapes (fuzzed: fuzz/python/npy_header.py)."""
    size = len(lead) if size is None else size
    if len(lead) < 10 or not lead.startswith(MAGIC):
        raise ValueError(_bad(name, "wrong magic bytes", what))
    major = lead[6]
    if major == 1:
        (length,), start = struct.unpack("<H", lead[8:10]), 10
    elif major in (2, 3):
        if len(lead) < 12:
            raise ValueError(_bad(name, "truncated header", what))
        (length,), start = struct.unpack("<I", lead[8:12]), 12
    else:
        raise ValueError(_bad(name, f"unsupported format version {major}", what))
    if length > MAX_HEADER:
        raise ValueError(_bad(name, f"a header of {length:,} bytes", what))
    text = lead[start : start + length]
    if len(text) < length:
        raise ValueError(_bad(name, "truncated header", what))
    shape, dtype, fortran = _parse(text, major, name, what)
    offset = start + length
    raw = lead[:offset]
    if dtype.hasobject:  # the data is a pickle of any length; `open_npy` refuses it
        return NpyHeader(shape, dtype, fortran, offset, max(0, size - offset), raw)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _MAX_BYTES:
        raise SizeMismatchError(
            f"{name}: header shape {list(shape)} is too large to exist (its byte size "
            "overflows); the file is corrupt: re-create it"
        )
    return NpyHeader(shape, dtype, fortran, offset, nbytes, raw)


def open_npy(path: str, name: str | None = None, what: str = "it") -> np.ndarray:
    """The array in the .npy file at `path`, memory-mapped read-only, after
    `read_header`'s checks. Object (pickled) arrays are refused: loading
    them would run code from the file. Raises FileNotFoundError or
    ValueError naming the file as `name`."""
    name = path if name is None else name
    header = read_header(path, name, what)
    if header.dtype.hasobject:
        raise ValueError(
            f"{name}: dtype {header.dtype.str} holds pickled Python objects, which are never "
            "loaded (unsafe); save a numeric or string array instead"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # checked above; anything left is a damaged file
        raise ValueError(_bad(name, f"{type(e).__name__}: {e}"[:200], what)) from None


def _bad(name: str, why: str, what: str = "it") -> str:
    return f"{name}: not an .npy file ({why}); save {what} with numpy.save"


def _parse(text: bytes, major: int, name: str, what: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        fields = ast.literal_eval(text.decode("utf8" if major == 3 else "latin1"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ValueError(_bad(name, "damaged header", what)) from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise ValueError(_bad(name, "header lacks descr, fortran_order or shape", what))
    shape = fields["shape"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(_bad(name, f"bad shape {shape!r}"[:200], what))
    if not isinstance(fields["fortran_order"], bool):
        raise ValueError(_bad(name, "bad fortran_order", what))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype = np.lib.format.descr_to_dtype(fields["descr"])
    except Exception:  # any descr NumPy cannot read: TypeError, ValueError, ...
        raise ValueError(_bad(name, f"bad dtype {fields['descr']!r}"[:200], what)) from None
    return shape, dtype, fields["fortran_order"]
