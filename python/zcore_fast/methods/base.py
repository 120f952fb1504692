"""What every selection method shares: its result type, argument checks,
progress reporting in stages (each a point where `cancel_on` stops a
method), and the thread cap for NumPy's BLAS."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np

from zcore_fast.cancel import check_cancelled
from zcore_fast.threads import blas_threads as shared_blas_threads

ProgressFn = Callable[[int, int], object]


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection method.

    Attributes:
        method: the method's name (one of `zcore_fast.METHODS`).
        indices: int64 row indices of the coreset, in the method's documented
            order (best first where the method ranks rows).
        scores: the per-row score the method selected by (shape (N,)), or None
            for methods without one (random).
        score_name: what `scores` holds, e.g. "zcore", "moderate_distance",
            "aum"; None when `scores` is None.
        params: every parameter the method ran with, defaults and choices made
            on the way included (e.g. ELFS's searched beta); JSON-serialisable.
        ids: the id of every row (shape (N,)) when the embeddings were a
            table read with an id column, else None; `ids[indices]` are the
            coreset's ids.
        source: what a table input was read from (format, path, parts,
            column, id column); empty for arrays and .npy files.
    """

    method: str
    indices: np.ndarray
    scores: np.ndarray | None = None
    score_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    ids: np.ndarray | None = field(default=None, repr=False)
    source: dict[str, Any] = field(default_factory=dict)


#: Methods other than ZCore report progress(done, PROGRESS_TOTAL): thousandths.
PROGRESS_TOTAL = 1000


class Steps:
    """Reports a multi-stage method's progress as progress(done, 1000).

    Each stage owns a fixed share of the 1000, weighted by its expected cost
    (k-means iterations and training epochs take very different times), so a
    progress bar's ETA means something; a stage that ends early (k-means
    converging) skips to the end of its share."""

    def __init__(self, callback: ProgressFn | None, shares: Sequence[float] = (1.0,)) -> None:
        if callback is not None and not callable(callback):
            raise TypeError("progress must be callable as progress(done, total)")
        check_cancelled()  # an event set before the method began stops it at once
        self.callback = callback
        cumulative = np.cumsum(shares, dtype=np.float64)
        self._ends = [round(PROGRESS_TOTAL * c / cumulative[-1]) for c in cumulative]
        self._stages = 0
        self.done = 0

    def stage(self) -> Stage:
        """The next stage (stages are taken in order)."""
        start = self._ends[self._stages - 1] if self._stages else 0
        end = self._ends[self._stages]
        self._stages += 1
        return Stage(self, start, end)

    def _reach(self, value: int) -> None:
        check_cancelled()  # every progress point is a point to stop at
        if value > self.done:
            self.done = value
            if self.callback is not None:
                self.callback(self.done, PROGRESS_TOTAL)


class Stage:
    """One stage of a `Steps`: reports its own (done, total) within its share."""

    def __init__(self, parent: Steps, start: int, end: int) -> None:
        self.parent, self.start, self.end = parent, start, end

    def report(self, done: int, total: int) -> None:
        """A progress(done, total) callback for work done as this stage."""
        check_cancelled()  # reported to even when nobody listens
        share = (self.end - self.start) * min(done, total) // max(1, total)
        self.parent._reach(self.start + share)

    def finish(self) -> None:
        """Marks the stage done."""
        self.parent._reach(self.end)


def positive_int(name: str, value: object) -> int:
    """`value` as an int >= 1, or a TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def fraction(name: str, value: object, *, below_one: bool = True) -> float:
    """`value` as a float in [0, 1) (or [0, 1] when not `below_one`)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    top_ok = v < 1.0 if below_one else v <= 1.0
    if not (math.isfinite(v) and v >= 0.0 and top_ok):
        interval = "[0, 1)" if below_one else "[0, 1]"
        raise ValueError(f"{name} must be a fraction in {interval}, got {value}")
    return v


def seed_int(seed: object) -> int:
    """`seed` as a non-negative int (NumPy generators refuse negatives)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for (seed, stream...): each random step of a
    method draws from its own stream, so adding draws to one step never
    changes another's."""
    return np.random.default_rng([seed, *stream])


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Caps NumPy's BLAS pool at `threads` while inside, when threadpoolctl is
    installed (it is optional: without it the pool follows OMP_NUM_THREADS /
    OPENBLAS_NUM_THREADS, which is also what `threads=None` does). The pool
    is the process's: calls overlapping in several threads share the cap
    (`zcore_fast.threads.SharedCap`), and it is put back after the last."""
    with shared_blas_threads(threads):
        yield
