"""Data and reference timing for benches/bench_scale.py.

`ensure_mixture` writes a synthetic embedding pool straight into a float16
.npy memmap, chunk by chunk, so generation never holds the pool in RAM (the
10^8 x 64 file is 12.8 GB). `reference_seconds_per_sample` times the plain
NumPy ZCore of tests/reference.py on the same file.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference import sample_effect

#: Bump when the generator changes: the version is part of the file name, so
#: files of an older generator are never reused.
GENERATOR_VERSION = 2
#: Values per generated chunk (16 MiB of float32 scratch per worker).
CHUNK_VALUES = 1 << 22
#: Degrees of freedom of the per-row Student-t factor (heavy-ish tails).
TAIL_DOF = 5.0

Log = Callable[[str], None]


def log(msg: str) -> None:
    """A timestamped progress line on stderr (the benchmarks' figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mixture_path(workdir: Path, n: int, d: int, seed: int, clusters: int) -> Path:
    """Where the pool of these parameters lives (the name says all of them)."""
    return workdir / f"mix_n{n}_d{d}_k{clusters}_s{seed}_v{GENERATOR_VERSION}.npy"


def mixture_params(d: int, seed: int, clusters: int) -> dict[str, np.ndarray]:
    """The mixture: random centres, imbalanced cluster weights, per-cluster
    spreads, per-dimension scales (real embedding dimensions differ in
    variance) and a mixing of neighbouring dimensions (they are correlated,
    too), all from `seed`."""
    rng = np.random.default_rng([seed, 0])
    weights = rng.lognormal(0.0, 0.7, clusters)
    return {
        "centres": rng.standard_normal((clusters, d)).astype(np.float32),
        "cumulative": np.cumsum(weights / weights.sum()),
        "spread": (0.35 * rng.lognormal(0.0, 0.4, clusters)).astype(np.float32),
        "dim_scale": rng.lognormal(0.0, 0.3, d).astype(np.float32),
        "mix": rng.uniform(-0.8, 0.8, d).astype(np.float32),
        # N(0, 1) noise is looked up in this table by random 16-bit indices:
        # 3x faster than drawing normals, and 65,536 levels are finer than
        # float16 can tell apart within a cluster.
        "normals": rng.standard_normal(1 << 16).astype(np.float32),
    }


def chunk_rows(d: int) -> int:
    return max(1, CHUNK_VALUES // d)


def _fill(out: np.ndarray, lo: int, hi: int, params: dict[str, np.ndarray], key: list[int]) -> None:
    """Rows lo..hi of `out`: centre of a drawn cluster + its spread x a
    Student-t row factor x correlated N(0, 1) noise, scaled per dimension.
    Seeded by the chunk's own key, so any chunk order (threads) gives the
    same bytes."""
    rng = np.random.default_rng(key)
    m, d = hi - lo, out.shape[1]
    cluster = np.searchsorted(params["cumulative"], rng.random(m), side="right")
    cluster = np.minimum(cluster, len(params["cumulative"]) - 1)
    tail = np.sqrt(TAIL_DOF / rng.chisquare(TAIL_DOF, m)).astype(np.float32)
    rows = np.take(params["normals"], rng.integers(0, 1 << 16, (m, d), dtype=np.uint16))
    rows[:, 1:] += params["mix"][1:] * rows[:, :-1]  # correlate neighbouring dimensions
    rows *= (params["spread"][cluster] * tail)[:, None]
    rows += params["centres"][cluster]
    rows *= params["dim_scale"]
    out[lo:hi] = rows  # cast to float16 on assignment


def ensure_mixture(
    workdir: Path,
    n: int,
    d: int,
    *,
    seed: int = 0,
    clusters: int = 1000,
    threads: int = 2,
    log: Log | None = None,
) -> tuple[Path, float | None]:
    """The pool's path, generated unless a complete file of the right shape
    and dtype is already there; and the generation seconds (None if reused).

    Written to a temporary name and renamed when complete, so an interrupted
    generation is never mistaken for a pool. The bytes depend only on the
    parameters, not on `threads` (chunks are keyed by their index)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = mixture_path(workdir, n, d, seed, clusters)
    if path.exists():
        try:
            old = np.load(path, mmap_mode="r")
            if old.shape == (n, d) and old.dtype == np.float16:
                return path, None
        except (OSError, ValueError):
            pass
        path.unlink()
    need = n * d * 2 + 4096
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise OSError(
            f"{workdir} has {free / 1e9:.1f} GB free, the pool needs {need / 1e9:.1f} GB "
            "(use --workdir on a larger disk)"
        )
    for stale in workdir.glob(f"{path.name}.partial-*"):  # left by a killed generation
        if not _alive(stale.name.rsplit("-", 1)[1]):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}")
    params = mixture_params(d, seed, clusters)
    step = chunk_rows(d)
    chunks = math.ceil(n / step)
    start = last = time.perf_counter()
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, d))
    try:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            futures = [
                pool.submit(_fill, out, i * step, min(n, (i + 1) * step), params, [seed, 1, i])
                for i in range(chunks)
            ]
            for i, fut in enumerate(futures):
                fut.result()
                now = time.perf_counter()
                if log is not None and (now - last > 5 or i == chunks - 1):
                    last = now
                    done = min(n, (i + 1) * step) * d * 2
                    rate = done / (now - start) / 1e9
                    log(f"generating {path.name}: {size(done)} of {size(need)} ({rate:.2f} GB/s)")
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path, time.perf_counter() - start


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def reference_seconds_per_sample(
    path: Path, samples: int, *, seed: int = 0, redund_nn: int = 1000, redund_exp: float = 4.0
) -> dict[str, float]:
    """Seconds per sample of the plain NumPy ZCore (tests/reference.py's
    `sample_effect`: gather the subspace's columns, full distances, argmin,
    a stable argsort of all rows) with the reference's draws
    (NumPy `choice` and `triangular`), on the memory-mapped file.

    The per-dimension min/median/max it draws from are computed only for
    the dimensions drawn and not timed: a one-time cost the reference
    amortises over all its samples. One extra first sample is run untimed,
    so that page-cache misses of a cold file do not count."""
    x = np.load(path, mmap_mode="r")
    rng = np.random.default_rng([seed, 2])
    dims = [rng.choice(x.shape[1], 2, replace=False) for _ in range(samples + 1)]
    start = time.perf_counter()
    stats: dict[int, tuple[float, float, float]] = {}
    for d in sorted({int(v) for pair in dims for v in pair}):
        col = np.asarray(x[:, d], dtype=np.float32)
        stats[d] = (float(col.min()), float(np.median(col)), float(col.max()))
    stats_seconds = time.perf_counter() - start
    draws = []
    for pair in dims:
        lo, md, hi = (np.array([stats[int(v)][j] for v in pair]) for j in range(3))
        draws.append((pair, rng.triangular(lo, md, hi).astype(np.float32)))
    sample_effect(x, draws[0][0], draws[0][1], redund_nn, redund_exp)  # warm-up
    start = time.perf_counter()
    for pair, q in draws[1:]:
        sample_effect(x, pair, q, redund_nn, redund_exp)
    per = (time.perf_counter() - start) / samples
    return {"seconds_per_sample": per, "samples": samples, "stats_seconds": stats_seconds}


def default_reference_samples(n: int) -> int:
    """A few seconds of reference at any N: 500 samples at 10^4, 5 at 10^6,
    at least 3."""
    return max(3, min(500, 5_000_000 // max(1, n)))


# --- measurement and formatting helpers -------------------------------------------------------


def proc_status(pid: int | str) -> dict[str, int]:
    """Memory fields of /proc/<pid>/status in bytes ({} when unreadable)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


class Progress:
    """A progress(done, total) callback writing to stderr: one rewritten line
    on a terminal, else a line every 15 s."""

    def __init__(self, label: str, unit: str = "") -> None:
        self.label, self.unit, self.tty = label, unit, sys.stderr.isatty()
        self.start = self.last = time.perf_counter()
        self.shown = self.finished = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        repeat = done >= total and self.finished  # the final count, already shown
        early = done < total and now - self.last < (1.0 if self.tty else 15.0)
        if repeat or early:
            return
        self.finished = done >= total
        self.last, self.shown = now, True
        el = now - self.start
        eta = f"{(total - done) * el / done:.0f} s" if done else "-"
        msg = (
            f"[{self.label}] {done:,}/{total:,}{self.unit} ({100 * done / max(1, total):.0f}%), "
            f"{el:.0f} s, ETA {eta}"
        )
        sys.stderr.write(f"\r{msg}\x1b[K" if self.tty else msg + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\n")


def dir_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def count(text: str) -> int:
    """A count written as 1000000, 1_000_000, 1,000,000, 1e6 or 10^6."""
    t = text.replace("_", "").replace(",", "").strip()
    try:
        value = 10 ** int(t[3:]) if t.startswith("10^") else float(t)
    except ValueError:
        value = -1.0
    if value != int(value) or value < 0:
        raise ValueError(f"not a whole count: {text!r}")
    return int(value)


def sci(n: int) -> str:
    """1e6 for powers of ten, else 1,281,167."""
    e = len(str(n)) - 1
    return f"1e{e}" if n >= 10 and n == 10**e else f"{n:,}"


def gib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / (1 << 30):.2f}"


def size(b: float) -> str:
    """Bytes as GB or MB (decimal, like disk sizes)."""
    return f"{b / 1e9:.2f} GB" if b >= 1e8 else f"{b / 1e6:.1f} MB"
