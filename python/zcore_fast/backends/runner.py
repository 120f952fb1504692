"""Running samples: one device's loop, and several devices side by side.

Each device runs a contiguous share of each half of the samples into its
own int64 fixed-point sums; the shares are added on the host. Integer sums
do not depend on order, so the result is the same for any split.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from zcore_fast.backends import blocks, philox, search, triton_search

ProgressFn = Callable[[int, int], object]

#: Samples drawn at once: their draws take 16 bytes per sample and dimension.
CHUNK = 1 << 16
#: With streamed blocks, more samples per sweep over the block pairs.
STREAM_CHUNK = 1 << 22
#: Seconds between progress reports.
REPORT_EVERY = 0.05


@dataclass(frozen=True)
class Params:
    """The ZCore parameters, by the paper's names (checked by the caller)."""

    n_sample: int
    sample_dim: int
    redund_nn: int
    redund_exp: float
    rand_init: bool
    seed: int


class _CancelledError(Exception):
    """Raised inside workers after another thread failed or was interrupted."""


class _Progress:
    """Counts finished samples; reports from the calling thread."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total, self.progress = total, progress
        self.done, self.last = 0, 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def add(self, count: int, report: bool) -> None:
        if self.stop.is_set():
            raise _CancelledError
        with self.lock:
            self.done += count
        if report:
            self.report()

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (final or now - self.last >= REPORT_EVERY):
            self.last = now
            self.progress(self.done, self.total)


class DeviceScorer:
    """The pool on one device and the loop that runs samples there."""

    def __init__(
        self,
        pool: blocks.Resident | blocks.Streamed,
        stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        sub: torch.Tensor,
        params: Params,
        batch_size: int,
        kernels: str,
    ) -> None:
        self.pool, self.stats, self.sub, self.p = pool, stats, sub, params
        self.device = sub.device
        n = pool.columns.shape[1]
        self.plan = search.plan_search(n, sub.shape[1], params.redund_nn, params.redund_exp)
        self.batch_size = batch_size
        self.effects = (
            triton_search.sample_effects if kernels == "triton" else search.sample_effects
        )

    def run(self, start: int, stop: int, acc: torch.Tensor, tick: Callable[[int], None]) -> None:
        """Adds the fixed-point effects of samples start..stop to `acc` (N,)."""
        chunk = CHUNK if self.pool.layout.resident else STREAM_CHUNK
        one = torch.full(
            (self.batch_size,), search.FIXED_ONE, dtype=torch.int64, device=self.device
        )
        for first in range(start, stop, chunk):
            count = min(chunk, stop - first)
            dims, q = philox.sample_draws(self.stats, self.p.seed, first, count, self.p.sample_dim)
            for local, idx in self.pool.groups(dims):
                for at in range(0, idx.shape[0], self.batch_size):
                    sel = idx[at : at + self.batch_size]
                    winners, rows, fixed = self.effects(
                        self.pool.columns,
                        local[at : at + self.batch_size],
                        dims[sel],
                        q[sel],
                        self.sub,
                        self.plan,
                    )
                    acc.index_add_(0, winners, one[: winners.shape[0]])
                    acc.index_add_(0, rows.reshape(-1), fixed.reshape(-1), alpha=-1)
                    tick(int(sel.shape[0]))


def _split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous ranges covering start..stop."""
    edges = [start + (stop - start) * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def run_all(
    scorers: list[DeviceScorer],
    p: Params,
    progress: ProgressFn | None,
    span: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point raw scores of each half of the samples, summed over
    devices; of the samples in `span` (start, end) only, where given (a
    worker's share of a run split over processes: shares add up exactly)."""
    mid = p.n_sample // 2
    lo, hi = span if span is not None else (0, p.n_sample)
    halves = [(max(lo, 0), min(hi, mid)), (max(lo, mid), min(hi, p.n_sample))]
    halves = [(a, max(a, b)) for a, b in halves]  # a half outside the span: empty
    counter = _Progress(hi - lo, progress)
    parallel = len(scorers) > 1 and all(s.device.type == "cuda" for s in scorers)

    def work(i: int) -> list[np.ndarray]:
        scorer = scorers[i]
        n = scorer.pool.columns.shape[1]
        sums = []
        with _on(scorer.device):
            for start, stop in halves:
                acc = torch.zeros(n, dtype=torch.int64, device=scorer.device)
                lo, hi = _split(start, stop, len(scorers))[i]
                scorer.run(lo, hi, acc, lambda c: counter.add(c, report=not parallel))
                sums.append(acc.cpu().numpy())
        return sums

    if not parallel:
        parts = [work(i) for i in range(len(scorers))]
    else:
        with ThreadPoolExecutor(len(scorers)) as ex:
            futures = [ex.submit(work, i) for i in range(len(scorers))]
            try:
                while not all(f.done() for f in futures):
                    time.sleep(REPORT_EVERY)
                    for f in futures:
                        if f.done() and f.exception() is not None:
                            raise f.exception()  # type: ignore[misc]
                    counter.report()
            except BaseException:
                counter.stop.set()  # workers raise _CancelledError at their next batch
                raise
            parts = [f.result() for f in futures]
    counter.report(final=True)
    first = np.sum([part[0] for part in parts], axis=0)
    second = np.sum([part[1] for part in parts], axis=0)
    return first, second


def _on(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Makes `device` current while scoring on it: Triton launches on the
    current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
