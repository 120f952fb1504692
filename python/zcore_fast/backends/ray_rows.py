"""ZCore on a Ray cluster with the pool split by rows (row sharding), for
pools that do not fit one node.

Each worker is a Ray actor holding a contiguous range of the global rows
(`_native.RowShard`, built from its part of the files: no node reads the
whole pool). The driver coordinates every batch of samples in three
exchanges (the protocol is in rust/score/rows.rs):

1. each worker returns its nearest row to each sample point; the driver
   keeps the smallest (distance, global row), ties to the lower row;
2. each worker returns its share of the k nearest rows to each winner
   (`_native.first_share`); the driver keeps the global k nearest and
   weighs them as one process does, and asks every worker again for all k
   for the few samples where a share left that inexact;
3. each worker adds the rewards and penalties of the rows it owns.

The per-dimension statistics are the global ones: minimum and maximum of
the shards' minima and maxima; the median by an exact radix selection over
the values' 32-bit order keys (three rounds in which every worker counts its
keys by their next bits and the driver narrows to the bin holding the
median's rank). The scores are bit-identical to one local process.

A worker that dies takes its share of the sums with it, so the run starts
again on new workers (the scores do not change). Ctrl-C or a raising
progress callback stops the run between two exchanges (each is one batch).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, Callable

import numpy as np

from zcore_fast.backends.ray_backend import (
    MAX_RETRIES,
    RayOptions,
    _original,
    _shape,
    connect,
)
from zcore_fast.npyfile import open_npy
from zcore_fast.shards import Shards, pool_shape
from zcore_fast.threads import available_threads

ProgressFn = Callable[[int, int], object]

#: Samples per batch to start with; batches then grow until one takes
#: about TARGET_SECONDS, so the three exchanges' fixed cost stays small.
FIRST_BATCH = 256
TARGET_SECONDS = 0.5
#: Bytes of neighbour lists (12 per neighbour) a batch may send to the
#: driver from all workers together.
MAX_BATCH_BYTES = 256 << 20
#: The margin, in standard deviations, of a worker's first share of each
#: sample's k nearest (`_native.first_share`).
FIRST_MARGIN = 3.0
#: Once more than this fraction of the samples had to be asked again (rows
#: sorted by something the embeddings show, e.g. by class), every worker
#: sends all k at once.
ASK_AGAIN_MOST = 0.1


def row_ranges(n: int, workers: int) -> list[tuple[int, int]]:
    """0..n cut into contiguous row ranges, one per worker, each of at
    least 2 rows (a shard must be a pool of its own): fewer ranges than
    workers for tiny pools."""
    parts = max(1, min(workers, n // 2))
    cuts = [n * i // parts for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def score_halves(
    inputs: Sequence[Shards | np.ndarray],
    *,
    n_sample: int,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    seed: int,
    options: RayOptions,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point halves (int64, shape (N,) each) of a run over
    `inputs` (concatenated along dimensions; row shards and arrays with the
    same rows), the rows split over Ray workers; `_native.finish_halves`
    turns them into the scores."""
    if options.device is not None:
        raise ValueError(
            "row sharding runs the Rust engine on every worker; device= (--ray-device) is for "
            "sharding='samples'"
        )
    ray = connect(options.address)
    worker_cls = _worker_class(ray)
    workers, cpus = _shape(ray, options)
    # Every worker takes part in every batch, so all must run at once: no
    # more of them than the cluster's CPUs hold (the scores do not depend
    # on the count).
    total_cpus = int(ray.cluster_resources().get("CPU", cpus))
    workers = max(1, min(workers, total_cpus // cpus))
    n = pool_shape(inputs)[0]
    jobs = row_ranges(n, workers)
    params = {
        "n_sample": n_sample,
        "sample_dim": sample_dim,
        "redund_nn": redund_nn,
        "redund_exp": redund_exp,
        "seed": seed,
    }
    parts = [[_part(ray, x, a, b) for x in inputs] for a, b in jobs]
    for attempt in range(MAX_RETRIES + 1):
        actors = [worker_cls.options(num_cpus=cpus).remote() for _ in jobs]
        try:
            return _run(ray, actors, parts, jobs, n, params, progress)
        except ray.exceptions.RayActorError:
            if attempt == MAX_RETRIES:
                raise RuntimeError(
                    f"a Ray worker of the row-sharded run died {attempt + 1} times; see the "
                    "Ray logs (is a node out of memory?)"
                ) from None
        except ray.exceptions.RayTaskError as e:
            raise _original(e) from None
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    raise AssertionError("unreachable")


def _part(ray: Any, x: Shards | np.ndarray, a: int, b: int) -> Any:
    """What a worker needs to read rows a..b of input `x`: the shards'
    absolute paths and row counts, or the rows of an array (through the
    object store)."""
    if isinstance(x, np.ndarray):
        return ray.put(np.ascontiguousarray(x[a:b]))
    return ("shards", tuple(os.path.abspath(f) for f in x.files), x.rows)


def _run(
    ray: Any,
    actors: list[Any],
    parts: list[list[Any]],
    jobs: list[tuple[int, int]],
    n: int,
    params: dict[str, Any],
    progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    from zcore_fast import _native

    opened = ray.get(
        [a.open.remote(p, lo, hi, n, params) for a, p, (lo, hi) in zip(actors, parts, jobs)]
    )
    bad = [o[1] for o in opened if o[0] == "nonfinite"]
    if bad:
        raise ValueError(_non_finite_message(np.concatenate(bad)))
    lo = np.min([o[1] for o in opened], axis=0)
    hi = np.max([o[2] for o in opened], axis=0)
    d = lo.shape[0]
    prefixes = np.zeros(2 * d, dtype=np.uint32)
    ranks = np.tile(np.asarray(_native.median_ranks(n), dtype=np.uint64), d)
    done = 0
    for bits in _native.median_rounds():
        counts = np.zeros(2 * d << bits, dtype=np.uint64)
        for part in ray.get([a.key_histogram.remote(prefixes, done, bits) for a in actors]):
            counts += part
        prefixes, ranks = _native.median_narrow(counts, prefixes, ranks, bits)
        done += bits
    md = _native.median_values(prefixes, n)
    ray.get([a.set_stats.remote(lo, md, hi) for a in actors])

    n_sample, sample_dim = params["n_sample"], params["sample_dim"]
    k = min(params["redund_nn"], n - 1)
    # Each worker first sends its share of each sample's k nearest (with a
    # margin), not all k: about k rows in all instead of k per worker. A
    # sample whose merge that leaves inexact is asked again for all k.
    limits = [_native.first_share(k, b - a, n, FIRST_MARGIN) for a, b in jobs]
    # Samples whose neighbour lists fit MAX_BATCH_BYTES: at the first
    # shares, and when every worker sends all k.
    most = max(1, MAX_BATCH_BYTES // (12 * max(1, sum(limits))))
    most_full = max(1, MAX_BATCH_BYTES // (12 * k * len(actors)))
    threads = available_threads()
    merge = partial(_native.merge_penalties, k=k, redund_exp=params["redund_exp"], threads=threads)
    asked_again = 0
    # The draws, winners and neighbours of a batch do not depend on the
    # scores, so each worker starts the next batch's winners while the
    # driver merges this batch's neighbours.
    size = min(FIRST_BATCH, most)
    first, count = 0, min(size, n_sample)
    pending = [a.winners.remote(first, count) for a in actors]
    tick = time.perf_counter()
    while pending:
        rows, coords = _native.merge_winners(ray.get(pending), sample_dim)
        coords = coords.reshape(count, sample_dim)
        samples = np.arange(first, first + count, dtype=np.uint64)
        # In pieces of at most `most` samples (one piece, unless the
        # shares grew to all k after this batch was drawn).
        pieces = []
        for lo in range(0, count, most):
            hi = min(count, lo + most)
            centres = ray.put((samples[lo:hi], rows[lo:hi], coords[lo:hi].ravel()))
            refs = [a.neighbours.remote(centres, lim) for a, lim in zip(actors, limits)]
            pieces.append((lo, hi, refs))
        # Batches grow while one round takes less than TARGET_SECONDS.
        now = time.perf_counter()
        if now - tick < TARGET_SECONDS:
            size = min(2 * size, most)
        tick = now
        following = first + count
        next_count = min(size, n_sample - following)
        pending = [a.winners.remote(following, next_count) for a in actors] if next_count else []
        for lo, hi, refs in pieces:
            merged, again = merge(ray.get(refs))
            if len(again):
                piece = (samples[lo:hi], rows[lo:hi], coords[lo:hi])
                merged = _ask_again(ray, actors, merge, merged, again, piece, k, most_full)
                asked_again += len(again)
            effects = ray.put((rows[lo:hi], *merged))
            # Not waited for: each worker runs its calls in order.
            for a in actors:
                a.apply.remote(first + lo, effects)
        if asked_again > ASK_AGAIN_MOST * following and limits != [k] * len(actors):
            # Rows not in random order across workers: all k at once.
            limits, most = [k] * len(actors), most_full
            size = min(size, most)
        if progress is not None:
            progress(following, n_sample)
        first, count = following, next_count
    halves = ray.get([a.halves.remote() for a in actors])
    return (
        np.concatenate([h[0] for h in halves]),
        np.concatenate([h[1] for h in halves]),
    )


def _ask_again(
    ray: Any,
    actors: list[Any],
    merge: Callable[..., Any],
    merged: tuple[np.ndarray, np.ndarray, np.ndarray],
    again: np.ndarray,
    piece: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
    most: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`merged` with the samples at positions `again` merged from every
    worker's k nearest (asked `most` samples at a time, so the lists stay
    within MAX_BATCH_BYTES) instead of their first shares."""
    from zcore_fast import _native

    samples, rows, coords = piece
    for lo in range(0, len(again), most):
        at = again[lo : lo + most]
        picked = (samples[at], rows[at], coords[at].ravel())
        redo, still = merge(ray.get([a.neighbours.remote(picked, k) for a in actors]))
        # Every worker sent all it holds up to k: the merge is exact.
        assert not len(still), "a merge of every worker's k nearest was not exact"
        merged = _native.splice_penalties(merged, at, redo)
    return merged


def _non_finite_message(rows: np.ndarray) -> str:
    """The engine's message for NaN/Inf rows, with global row numbers."""
    rows = np.unique(rows)
    shown = ", ".join(str(r) for r in rows[:8])
    more = ", ..." if len(rows) > 8 else ""
    return (
        f"embeddings contain NaN or Inf in {len(rows)} row(s): {shown}{more}; remove or "
        "repair those rows before scoring"
    )


_CLASSES: dict[int, Any] = {}


def _worker_class(ray: Any) -> Any:
    """The actor class, made once per Ray module."""
    key = id(ray)
    if key not in _CLASSES:
        _CLASSES[key] = ray.remote(_RowWorker)
    return _CLASSES[key]


def _rows_of(ray: Any, part: Any, a: int, b: int) -> np.ndarray:
    """Rows a..b of one input on this worker: its slice of an array, or the
    parts of the shard files that hold those rows (memory-mapped; copied
    only when they span several files)."""
    if isinstance(part, ray.ObjectRef):
        return np.asarray(ray.get(part))
    _, files, counts = part
    pieces = []
    start = 0
    for f, count in zip(files, counts):
        lo, hi = max(a, start), min(b, start + count)
        if lo < hi:
            if not os.access(f, os.R_OK):
                raise FileNotFoundError(
                    f"Ray node {socket.gethostname()} ({ray.util.get_node_ip_address()}) cannot "
                    f"read {f}; every node needs the shards it is given at the same path "
                    "(shared storage)"
                )
            pieces.append(open_npy(f, name=f, what="embeddings")[lo - start : hi - start])
        start += count
    if len(pieces) == 1:
        return np.ascontiguousarray(pieces[0])
    return np.concatenate(pieces)


class _RowWorker:
    """One Ray worker of a row-sharded run: holds its rows as a
    `_native.RowShard` and answers the driver's exchanges, in order."""

    def __init__(self) -> None:
        self._shard: Any = None

    def open(
        self, parts: list[Any], a: int, b: int, n: int, params: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Builds the shard of rows a..b; returns ("ok", minima, maxima),
        or ("nonfinite", global rows) when rows hold NaN or Inf (the driver
        names them all, as one process would)."""
        import ray

        from zcore_fast import _native

        arrays = [_rows_of(ray, p, a, b) for p in parts]
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        try:
            self._shard = _native.RowShard(
                arrays, first_row=a, total_rows=n, threads=max(1, int(cpus)), **params
            )
        except ValueError as e:
            if "NaN or Inf" not in str(e):
                raise
            finite = np.ones(b - a, dtype=bool)
            for x in arrays:
                finite &= np.isfinite(x).all(axis=1)
            return ("nonfinite", np.flatnonzero(~finite) + a)
        lo, hi = self._shard.extremes()
        return ("ok", lo, hi)

    def key_histogram(self, prefixes: np.ndarray, done: int, bits: int) -> np.ndarray:
        """One round of the median selection's counts."""
        return self._shard.key_histogram(prefixes, done, bits)

    def set_stats(self, lo: np.ndarray, md: np.ndarray, hi: np.ndarray) -> None:
        """The global statistics."""
        self._shard.set_stats(lo, md, hi)

    def winners(self, first: int, count: int) -> tuple[np.ndarray, ...]:
        """This shard's nearest row to each sample of the batch."""
        return tuple(self._shard.winners(first, count))

    def neighbours(
        self, centres: tuple[np.ndarray, np.ndarray, np.ndarray], limit: int
    ) -> tuple[np.ndarray, ...]:
        """This shard's `limit` nearest rows to each sample's global winner
        (samples, their winners' rows and coordinates)."""
        samples, rows, coords = centres
        return tuple(self._shard.neighbours(samples, rows, coords, limit))

    def apply(self, first: int, effects: tuple[np.ndarray, ...]) -> None:
        """Adds the batch's rewards and penalties of this shard's rows."""
        self._shard.apply(first, *effects)

    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """This shard's fixed-point halves."""
        return tuple(self._shard.halves())  # type: ignore[return-value]
