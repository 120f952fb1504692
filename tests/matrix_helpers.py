"""The inputs and the runner of the bad-input matrix (tests/test_errors_matrix.py):
what each row's command line runs on, and how it is run."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zcore_fast
from disk_helpers import file_size_limit
from zcore_fast.cli import main


@dataclass(frozen=True)
class Case:
    """One row's command line (run in the folder `make_inputs` filled)."""

    argv: tuple[str, ...]
    #: Modules the row needs (the `test` extra installs them).
    needs: tuple[str, ...] = ()
    #: (file, when): truncate the file in a child process, then run. When:
    #: "engine", just before the Rust engine maps it; "rows", when a NumPy
    #: method first reads a block of it.
    truncate: tuple[str, str] | None = None
    #: Environment variables set for the run.
    env: tuple[tuple[str, str], ...] = ()
    #: RLIMIT_FSIZE of the run (bytes; 0: none): a disk that fills up.
    fsize: int = 0


# --------------------------------------------------------------------- inputs


def _npy_header(fields: str, version: int) -> bytes:
    """A .npy prefix + header with this (possibly broken) dictionary text."""
    text = fields.encode("latin1")
    start = 10 if version == 1 else 12
    text += b" " * ((-(start + len(text) + 1)) % 64) + b"\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text


def make_inputs(root: Path) -> None:
    """Writes every input the rows name into `root` (40 rows x 4 dims each)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.save(root / "good.npy", x)
    np.save(root / "victim.npy", rng.normal(size=(400, 8)).astype(np.float32))
    np.save(root / "short.npy", x[:30])
    np.save(root / "big.npy", rng.normal(size=(2000, 8)).astype(np.float32))  # 64 KB
    np.save(root / "labels.npy", np.arange(40) % 3)
    np.save(root / "scores.npy", rng.random(40).astype(np.float32))
    cut = "{'descr': '<f4', 'fortran_order': False, 'shape': (40, 4"  # no closing brace
    for version in (1, 2, 3):
        (root / f"v{version}_header.npy").write_bytes(_npy_header(cut, version) + x.tobytes())
    np.save(root / "big_endian.npy", x.astype(">f4"))
    objects = np.empty((40, 2), dtype=object)
    objects[:] = "row"
    np.save(root / "object.npy", objects, allow_pickle=True)
    np.save(root / "int64.npy", np.arange(160, dtype=np.int64).reshape(40, 4))
    np.save(root / "d0.npy", np.float32(1.0))
    np.save(root / "d1.npy", np.ones(40, np.float32))
    np.save(root / "d3.npy", np.ones((40, 2, 2), np.float32))
    np.save(root / "rows0.npy", np.ones((0, 4), np.float32))
    np.save(root / "cols0.npy", np.ones((40, 0), np.float32))
    (root / "truncated.npy").write_bytes((root / "good.npy").read_bytes()[:-100])
    huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }"
    (root / "overflow.npy").write_bytes(_npy_header(huge, 1))
    (root / "huge_header.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 16))
    (root / "text.npy").write_text("index,score\n0,0.5\n")
    (root / "empty.npy").write_bytes(b"")
    (root / "folder.npy").mkdir()
    for name, row, value in (("f16_nan", 5, np.nan), ("f16_inf", 7, np.inf)):
        y = x.astype(np.float16)
        y[row, 1] = value
        np.save(root / f"{name}.npy", y)
    y = x.copy()
    y[3, 2], y[9, 0] = np.nan, -np.inf
    np.save(root / "f32_nan_inf.npy", y)
    np.save(root / "labels_float.npy", rng.random(40))
    np.save(root / "labels_2d.npy", np.zeros((40, 2), np.int64))
    np.save(root / "labels_short.npy", np.arange(30) % 3)
    np.save(root / "labels_str.npy", np.array(["cat", "dog"] * 20))
    np.save(root / "labels_str_short.npy", np.array(["cat", "dog", "bird"] * 13))
    np.save(root / "labels_object.npy", np.array(["cat", "dog"] * 20, dtype=object))
    (root / "a_file").write_text("not a directory\n")
    (root / "report_like").mkdir()
    (root / "report_like" / "results.csv").write_text("method,prune_rate\n")
    (root / "keep.pdf").write_text("")
    (root / "keep_big.txt").write_text("3\n40\n")
    (root / "no_images").mkdir()
    (root / "images").mkdir()
    for i in range(2):  # never decoded: every row fails before
        (root / "images" / f"img{i}.png").write_bytes(b"not decoded")


# ---------------------------------------------------------------- the runner

_TRUNCATE = """
import os, sys
path, when = sys.argv[1], sys.argv[2]

def cut():
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)

if when == "engine":  # after the CLI's checks, just before the engine maps the file
    from zcore_fast import _native
    real = _native.score
    def score(*args, **kwargs):
        cut()
        return real(*args, **kwargs)
    _native.score = score
else:  # after the file was opened and checked, at a NumPy method's first read
    from zcore_fast.methods.rows import Rows
    real = Rows.blocks
    def blocks(self, *args, **kwargs):
        cut()
        Rows.blocks = real
        return real(self, *args, **kwargs)
    Rows.blocks = blocks
from zcore_fast.cli import main
sys.exit(main(sys.argv[3:]))
"""


def run_case(case: Case, root: Path) -> tuple[int, str]:
    """(exit status, stderr) of the CLI run `case` in `root`."""
    if case.fsize:  # a limit on the files a process writes: in a child
        # The package under test, wherever it was imported from.
        package = str(Path(zcore_fast.__file__).resolve().parent.parent)
        proc = subprocess.run(
            [sys.executable, "-m", "zcore_fast.cli", *case.argv],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=file_size_limit(case.fsize),
            env={**os.environ, "PYTHONPATH": package},
        )
        return proc.returncode, proc.stderr
    if case.truncate is not None:
        path, when = case.truncate
        proc = subprocess.run(
            [sys.executable, "-c", _TRUNCATE, path, when, *case.argv],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return proc.returncode, proc.stderr
    err = io.StringIO()
    cwd = os.getcwd()
    saved = {name: os.environ.get(name) for name, _ in case.env}
    os.chdir(root)
    os.environ.update(case.env)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(list(case.argv))
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return status, err.getvalue()
