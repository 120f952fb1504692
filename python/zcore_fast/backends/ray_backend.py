"""ZCore on a Ray cluster: the samples split over workers (sample sharding).

Each worker is a Ray actor that memory-maps the pool itself, from a path
every node can read (the .npy files, or their column cache on shared
storage; arrays travel through Ray's object store), and scores a disjoint
share of the samples with the Rust engine, its rayon pool sized from the
CPUs Ray assigned it. The shares are parts of the run (`score::Part`):
under band search (large pools) the samples whose band dimension is in
the worker's group of dimensions, so each worker builds the band indexes
of its own dimensions only (a fixed cost per worker that a split by
sample index would repeat on every worker); otherwise contiguous ranges.
Every sample's draws depend only on (seed, its index) and its effects are
added as fixed-point integers, so the parts' partial sums add up exactly:
the scores are bit-identical to one local process for any number of
workers and any split (`_native.score_range`).

The partial sums are reduced in a tree of Ray tasks, so the driver
receives one pair of N-sized vectors, not one per worker. A worker that
dies has its range run again on a new one (the scores do not change);
Ctrl-C or a raising progress callback cancels the remote work; one
progress callback covers the whole cluster.

GPU workers: with `device` set ("cuda", or "cpu" where no GPU is, as CI
tests it), each worker runs the PyTorch backend on its range instead,
holding one GPU (`num_gpus=1`) for "cuda". Its fixed-point sums add up the
same way, so the scores are bit-identical to `backend="torch"` on that
device kind in one process (`torch_backend.score_range` and `finish`).

Ray is imported only here, and only when backend="ray" is used
(`pip install 'zcore-fast[ray]'`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

ProgressFn = Callable[[int, int], object]
#: One worker's job: samples start..end, part `part` of `parts` of them.
Job = tuple[int, int, int, int]

#: Times a range is started again after its worker died, before giving up.
MAX_RETRIES = 3
#: Seconds between progress polls of the workers.
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: `address` (None: RAY_ADDRESS, else
    "auto"), `workers` (None: one per node), CPUs per worker (None: the
    node's CPUs shared among its workers), and `device`: None for the Rust
    engine, else the torch device kind each worker scores on ("cuda": one
    GPU per worker; "cpu")."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: int | None = None
    device: str | None = None

    @property
    def gpus_per_worker(self) -> int:
        """GPUs each worker holds: one when it scores on CUDA."""
        return 1 if self.device is not None and self.device.startswith("cuda") else 0


def import_ray() -> Any:
    """ray, or an ImportError saying what to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'zcore-fast[ray]' (or pip install ray)"
        ) from None
    return ray


def connect(address: str | None) -> Any:
    """ray, connected to the cluster at `address` (Ray's default: the
    RAY_ADDRESS environment variable, else "auto", a cluster started on
    this machine with `ray start`). An existing connection is reused."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=target, logging_level="ERROR", log_to_driver=False)
    except ConnectionError as e:
        raise ConnectionError(
            f"no Ray cluster at {target!r} ({e}); start one with `ray start --head` or pass "
            "the head's address (--ray-address HOST:PORT, API ray_address=)"
        ) from None
    return ray


def ranges(n_sample: int, parts: int) -> list[tuple[int, int]]:
    """0..n_sample cut into `parts` contiguous ranges of near-equal size
    (empty ones dropped: more workers than samples)."""
    cuts = [n_sample * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def score_halves(
    sources: Sequence[str | np.ndarray],
    *,
    n_sample: int,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    seed: int,
    isa: str | None,
    options: RayOptions,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw fixed-point halves (int64, shape (N,) each) of a run, its
    samples split over Ray workers; `_native.finish_halves` (or, with
    `options.device`, `torch_backend.finish`) turns them into the scores.
    Raises what a worker raised (bad input, NaN rows), as one local process
    would."""
    ray = connect(options.address)
    worker_cls = _worker_class(ray)
    workers, cpus = _shape(ray, options)
    gpus = ray.cluster_resources().get("GPU", 0)
    if options.gpus_per_worker and gpus < 1:
        # Actors asking for a GPU the cluster lacks would wait forever.
        raise RuntimeError(
            f"device={options.device!r} needs GPUs, and the Ray cluster at "
            f"{options.address or 'the default address'} has none; add GPU nodes, or use "
            "device='cpu' or the Rust engine (no device)"
        )
    # Arrays travel through the object store; paths go as absolute paths
    # (a worker's working directory is not the driver's).
    refs = [ray.put(s) if isinstance(s, np.ndarray) else os.path.abspath(s) for s in sources]
    params = {
        "n_sample": n_sample,
        "sample_dim": sample_dim,
        "redund_nn": redund_nn,
        "redund_exp": redund_exp,
        "seed": seed,
        "isa": isa,
        "device": options.device,
    }
    # The Rust engine splits the whole run into parts (by band dimension
    # under band search, so each worker builds only its dimensions' band
    # indexes); the torch backend takes contiguous ranges of samples.
    if options.device is None:
        jobs = [(0, n_sample, i, workers) for i in range(workers)]
    else:
        jobs = [(a, b, 0, 1) for a, b in ranges(n_sample, workers)]

    def new_actor() -> Any:
        return worker_cls.options(num_cpus=cpus, num_gpus=options.gpus_per_worker).remote()

    actors = [new_actor() for _ in jobs]
    try:
        parts = _run(ray, new_actor, actors, jobs, refs, params, progress, n_sample)
        return _reduce(ray, parts)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _shape(ray: Any, options: RayOptions) -> tuple[int, int]:
    """(workers, CPUs each) from the options and the cluster's nodes."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    workers = options.workers or max(1, len(nodes))
    if options.cpus_per_worker:
        each = options.cpus_per_worker
    else:
        # The nodes' CPUs shared evenly, at least one each.
        each = max(1, sum(cpus) // workers) if cpus else 1
        each = min(each, max(cpus, default=1))
    return workers, each


def _run(
    ray: Any,
    new_actor: Callable[[], Any],
    actors: list[Any],
    jobs: list[Job],
    sources: list[Any],
    params: dict[str, Any],
    progress: ProgressFn | None,
    total: int,
) -> list[Any]:
    """Runs every range; returns the ObjectRefs of their (first, second)
    results. Replaces dead workers and re-runs their ranges."""
    pending: dict[Any, int] = {}
    results: list[Any] = [None] * len(jobs)
    retries = [0] * len(jobs)

    def start(i: int) -> None:
        ref = actors[i].run.remote(sources, params, *jobs[i])
        pending[ref] = i

    for i in range(len(jobs)):
        start(i)
    last_poll = 0.0
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                i = pending.pop(ref)
                try:
                    ray.get(ref)  # raises the worker's error, or that it died
                except ray.exceptions.RayActorError:
                    retries[i] += 1
                    if retries[i] > MAX_RETRIES:
                        raise RuntimeError(
                            f"the Ray worker for {_describe(jobs[i])} died "
                            f"{retries[i]} times; see the Ray logs (is a node out of memory?)"
                        ) from None
                    actors[i] = new_actor()
                    start(i)
                    continue
                except ray.exceptions.RayTaskError as e:
                    raise _original(e) from None
                results[i] = ref
                # Its CPUs go to workers still waiting for some (more
                # workers than the cluster runs at once); the result stays
                # in the node's object store, owned by this driver.
                ray.kill(actors[i], no_restart=True)
            now = time.monotonic()
            if progress is not None and now - last_poll >= POLL_SECONDS:
                last_poll = now
                progress(_done(ray, actors, jobs, results), total)
    except BaseException:
        # Ctrl-C, a raising progress callback, or a worker's error: stop
        # every range still running before re-raising.
        for actor in actors:
            actor.cancel.remote()
        raise
    if progress is not None:
        progress(total, total)
    return results


def _describe(job: Job) -> str:
    """A job in words, for errors."""
    a, b, part, parts = job
    return f"samples {a}..{b}" + (f" (part {part + 1} of {parts})" if parts > 1 else "")


def _share(job: Job) -> float:
    """The samples a job stands for: its range's share."""
    a, b, _, parts = job
    return (b - a) / parts


def _done(ray: Any, actors: list[Any], jobs: list[Job], results: list[Any]) -> int:
    """Samples done across the cluster (finished jobs count whole)."""
    polls = {i: a.done.remote() for i, a in enumerate(actors) if results[i] is None}
    done = round(sum(_share(j) for j, r in zip(jobs, results) if r is not None))
    try:
        done += sum(ray.get(list(polls.values()), timeout=5))
    except Exception:  # a worker that is being replaced: counted next time
        pass
    return done


def _reduce(ray: Any, parts: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The element-wise sum of the ranges' (first, second) pairs, added in
    a tree of Ray tasks beside the data, then fetched once."""
    add = _adder(ray)
    level = parts
    while len(level) > 1:
        pairs = [add.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    first, second = ray.get(level[0])
    return np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)


def _original(error: Any) -> BaseException:
    """The exception a worker raised, unwrapped from Ray's RayTaskError so
    callers see the same ValueError/ZCoreError as from a local run."""
    cause = error.as_instanceof_cause() if hasattr(error, "as_instanceof_cause") else error
    original = getattr(error, "cause", None)
    if isinstance(original, BaseException):
        return original
    return cause


_CLASSES: dict[int, Any] = {}


def _worker_class(ray: Any) -> Any:
    """The actor class, made once per Ray module (decorating at import
    would import Ray with this module)."""
    key = id(ray)
    if key not in _CLASSES:
        _CLASSES[key] = ray.remote(max_concurrency=4)(_Worker)
    return _CLASSES[key]


def _adder(ray: Any) -> Any:
    key = -id(ray)
    if key not in _CLASSES:
        # num_cpus=0: the adds must run while the workers hold every CPU.
        _CLASSES[key] = ray.remote(num_cpus=0)(_add_pairs)
    return _CLASSES[key]


def _add_pairs(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    return a[0] + b[0], a[1] + b[1]


class _Worker:
    """One Ray worker: scores a range of samples of the pool it maps. A
    threaded actor, so `done` and `cancel` are answered while `run` works
    (the engine releases the GIL)."""

    def __init__(self) -> None:
        self._done = 0
        self._stop = threading.Event()

    def done(self) -> int:
        """Samples of the current range done."""
        return self._done

    def cancel(self) -> None:
        """Stops the current range at its next progress point (~50 ms)."""
        self._stop.set()

    def run(
        self,
        sources: list[Any],
        params: dict[str, Any],
        start: int,
        end: int,
        part: int = 0,
        parts: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        import ray

        from zcore_fast import _native

        inputs = [ray.get(s) if isinstance(s, ray.ObjectRef) else s for s in sources]
        for item in inputs:
            if isinstance(item, str) and not os.access(item, os.R_OK):
                node = ray.util.get_node_ip_address()
                raise FileNotFoundError(
                    f"Ray node {socket.gethostname()} ({node}) cannot read {item}; every node "
                    "needs the pool at the same path (shared storage), and so does the column "
                    "cache when one is used (--cache-dir on shared storage, or --cache never)"
                )
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)

        share = _share((start, end, part, parts))

        def progress(done: int, total: int) -> None:
            # The engine counts within the part's work; report samples.
            self._done = round(share * done / total) if total else 0
            if self._stop.is_set():
                raise KeyboardInterrupt("cancelled by the driver")

        device = params.get("device")
        if device is not None:
            return _torch_range(inputs, params, start, end, device, max(1, int(cpus)), progress)
        params = {k: v for k, v in params.items() if k != "device"}
        return _native.score_range(
            inputs,
            start=start,
            end=end,
            part=part,
            parts=parts,
            threads=max(1, int(cpus)),
            progress=progress,
            **params,
        )


def _torch_range(
    inputs: list[Any],
    params: dict[str, Any],
    start: int,
    end: int,
    device: str,
    cpus: int,
    progress: ProgressFn,
) -> tuple[np.ndarray, np.ndarray]:
    """A worker's range on the PyTorch backend. Ray hides every GPU but the
    one it gave this worker, which is then "cuda" (device 0)."""
    import torch

    from zcore_fast.backends import torch_backend

    if device.startswith("cuda") and not torch.cuda.is_available():
        import ray

        raise RuntimeError(
            f"Ray node {socket.gethostname()} ({ray.util.get_node_ip_address()}) gave this "
            "worker a GPU but PyTorch sees none; check the node's CUDA driver and torch build"
        )
    torch.set_num_threads(cpus)
    p = torch_backend.Params(
        params["n_sample"],
        params["sample_dim"],
        params["redund_nn"],
        params["redund_exp"],
        False,  # noise is added once, when the halves are finished
        params["seed"],
    )
    return torch_backend.score_range(
        inputs, p, start, end, device="cuda" if device.startswith("cuda") else device,
        progress=progress,
    )  # fmt: skip
