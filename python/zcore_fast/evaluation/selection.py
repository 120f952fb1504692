"""Coresets for every prune rate of one (method, seed), without repeating work:
ZCore scores are computed once per seed and shared by the `zcore` method
(every budget is a prefix of one ranking) and by CCS over ZCore scores."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import numpy as np

from zcore_fast.methods.zcore import DEFAULTS
from zcore_fast.select import select

#: Methods whose coreset at a budget is the prefix of their largest one
#: (a greedy order, or random's one permutation for pools up to 2^26 rows).
NESTED = ("herding", "probcover", "random")

#: The options that configure a ZCore scoring run.
ZCORE_OPTIONS = tuple(k for k in DEFAULTS if k != "seed")


class Selector:
    """Selects from the training rows `x` (never from labels) and caches
    ZCore scores per (seed, ZCore options)."""

    def __init__(self, x: np.ndarray, threads: int | None) -> None:
        self.x = x
        self.threads = threads
        self._scores: dict[tuple[Any, ...], tuple[np.ndarray, float]] = {}

    def coresets(
        self,
        method: str,
        points: tuple[tuple[float, int], ...],
        seed: int,
        options: Mapping[str, Any],
        stage: Callable[[str], object],
    ) -> Iterator[tuple[float, np.ndarray, float]]:
        """(prune rate, kept row indices, selection seconds) for each
        (prune rate, rows kept) point.

        For ZCore the seconds are those of the one scoring run all rates
        share; for CCS over ZCore, that run's plus CCS's own.
        """
        n = self.x.shape[0]
        if method == "zcore":
            scores, seconds = self._zcore_scores(seed, options, stage)
            # The coreset at any budget is the top of this one ranking:
            # select_with("zcore", ...) gives the same rows (tested).
            order = select(scores, n)
            for rate, keep in points:
                yield rate, order[:keep], seconds
            return
        if method in NESTED and points:
            # Greedy orders (and random's permutation): the coreset at any
            # budget is a prefix of the largest one (tested against select_with).
            from zcore_fast.methods import select_with

            largest = max(count for _, count in points)
            stage(f"{method} seed {seed}: selecting {largest:,} rows (prefixes for the rest)")
            start = time.perf_counter()
            order = select_with(
                method, self.x, largest, seed=seed, labels=None, threads=self.threads, **options
            )
            seconds = time.perf_counter() - start
            for rate, count in points:
                yield rate, np.asarray(order[:count], dtype=np.int64), seconds
            return
        shared, options = 0.0, dict(options)
        if method == "ccs" and options.get("score", "zcore") == "zcore":
            zopts = {k: options.pop(k) for k in ZCORE_OPTIONS if k in options}
            scores, shared = self._zcore_scores(seed, zopts, stage)
            # An array of scores: CCS's default for arrays (higher = harder)
            # is ZCore's direction.
            options["score"] = scores
        from zcore_fast.methods import select_with

        for rate, count in points:
            stage(f"{method} seed {seed}: selecting {count:,} rows (prune rate {rate:.4g})")
            start = time.perf_counter()
            # labels=None always: the probe is scored with these labels, so
            # no method may see them, even one that can use them.
            keep = select_with(
                method,
                self.x,
                count,
                seed=seed,
                labels=None,
                threads=self.threads,
                **options,
            )
            seconds = shared + time.perf_counter() - start
            yield rate, np.asarray(keep, dtype=np.int64), seconds

    def _zcore_scores(
        self, seed: int, options: Mapping[str, Any], stage: Callable[[str], object]
    ) -> tuple[np.ndarray, float]:
        from zcore_fast.methods.zcore import score

        key = (seed, *sorted(options.items()))
        if key not in self._scores:
            stage(f"zcore seed {seed}: scoring")
            start = time.perf_counter()
            scores = score(self.x, seed=seed, threads=self.threads, **options)
            self._scores[key] = (scores, time.perf_counter() - start)
        return self._scores[key]
