"""ZCore scoring (arXiv 2411.15349) on the Rust engine."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from zcore_fast import _native
from zcore_fast.io import Embeddings, as_sources

ProgressFn = Callable[[int, int], object]

#: The paper's defaults, by the paper's names.
DEFAULTS: dict[str, object] = {
    "n_sample": 1_000_000,
    "sample_dim": 2,
    "redund_nn": 1000,
    "redund_exp": 4.0,
    "rand_init": True,
    "seed": 0,
}


def available_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def score(
    embeddings: Embeddings,
    *,
    n_sample: int = 1_000_000,
    sample_dim: int = 2,
    redund_nn: int = 1000,
    redund_exp: float = 4.0,
    rand_init: bool = True,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """ZCore scores of every row of `embeddings`, float32 in [0, 1].

    Args:
        embeddings: a 2-D array (float16/32/64, C or Fortran order, np.memmap
            included), a path to a .npy file (memory-mapped, never loaded
            whole), or a list of these concatenated along dimensions (same
            row count each).
        n_sample: random subspace samples (paper: n_sample).
        sample_dim: dimensions per subspace (paper: sample_dim).
        redund_nn: nearest neighbours penalised per sample (paper: redund_nn).
        redund_exp: exponent of the inverse-distance penalty (paper: redund_exp).
        rand_init: add U(0, 1) noise per row before normalising (paper: rand_init).
        seed: seed of every random draw; the same seed gives bit-identical
            scores for any thread count.
        threads: worker threads; default all available cores.
        progress: called as progress(done, total) from the calling thread
            about every 50 ms; raising from it stops scoring and propagates.

    Returns:
        float32 array of shape (N,): higher means keep.

    Raises:
        FileNotFoundError, ValueError, TypeError: for bad input, with what to do.
        KeyboardInterrupt: on Ctrl-C (checked about every 50 ms).
    """
    sources = as_sources(embeddings)
    n_sample = _positive_int("n_sample", n_sample)
    sample_dim = _positive_int("sample_dim", sample_dim)
    redund_nn = _positive_int("redund_nn", redund_nn)
    threads = available_threads() if threads is None else _positive_int("threads", threads)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable as progress(done, total)")
    return _native.score(
        sources,
        n_sample=n_sample,
        sample_dim=sample_dim,
        redund_nn=redund_nn,
        redund_exp=float(redund_exp),
        rand_init=bool(rand_init),
        seed=int(seed) % (1 << 64),
        threads=threads,
        progress=progress,
    )
