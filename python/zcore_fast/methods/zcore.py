"""ZCore scoring (arXiv 2411.15349) on the Rust engine."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from numbers import Real
from typing import Any, Callable, Literal, Union

import numpy as np

from zcore_fast import _native, backends
from zcore_fast.cache import CacheMode, cached, check_mode
from zcore_fast.integrations.tables import Resolved, is_table, resolve
from zcore_fast.io import Embeddings, PathLike, as_sources
from zcore_fast.npyfile import SizeMismatchError, read_header
from zcore_fast.shards import Shards, describe_inputs, input_names, row_inputs
from zcore_fast.threads import available_threads

ProgressFn = Callable[[int, int], object]
SampleCount = Union[int, Literal["auto"]]

#: How backend="ray" splits the work: the samples, or the pool's rows.
SHARDINGS = ("samples", "rows")

#: `n_sample="auto"` aims for this many redundancy penalties per row on
#: average, so that at 10^7-10^8 rows most rows are still looked at.
PENALTIES_PER_ROW = 100


def auto_n_sample(n: int, redund_nn: int = 1000) -> int:
    """The sample count `n_sample="auto"` chooses for a pool of `n` rows.

    The paper's 10^6 samples, raised where that would leave rows barely
    touched: each sample penalises `redund_nn` rows, so at least
    PENALTIES_PER_ROW * n / redund_nn samples (10^7 for 10^8 rows).
    """
    return max(1_000_000, math.ceil(PENALTIES_PER_ROW * n / max(1, min(redund_nn, n - 1))))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties (NaN when
    either input is constant)."""
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else float("nan")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Rows with equal values share the mean of the ranks they span.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    mean_rank = (starts + ends - 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


@dataclass(frozen=True)
class ScoreReport:
    """Scores plus what a user needs to trust them."""

    #: float32 scores in [0, 1], shape (N,): higher means keep.
    scores: np.ndarray = field(repr=False)
    #: Samples drawn (resolved when `n_sample="auto"`).
    n_sample: int
    #: Spearman rho between the raw scores of the first and the second half
    #: of the samples (two independent half-runs). Near 1: more samples
    #: would hardly change the ranking; well below 1: consider more samples.
    #: NaN when a half has no signal (e.g. a single sample). Pools of more
    #: than 2,097,152 rows are measured on that many evenly spaced rows.
    convergence: float
    #: Wall time of scoring, seconds.
    seconds: float
    #: The parameters used, by the paper's names (plus seed and threads).
    parameters: dict[str, object]
    #: The column cache scored from (see `zcore_fast.cache`), or None.
    cache_path: str | None = None
    #: Seconds spent building that cache in this call; 0.0 when it was
    #: reused or none was used. Not included in `seconds`.
    cache_seconds: float = 0.0
    #: The instruction-set level the Rust engine ran ("portable", "avx2" or
    #: "avx512"; pick one with the ZCORE_FAST_ISA environment variable), or
    #: None when a torch backend scored.
    isa: str | None = None
    #: The id of each row (from `id_column` of a table input), or None.
    ids: np.ndarray | None = field(default=None, repr=False)
    #: What a table input was read from (format, path, parts and their
    #: first rows, column, id column); empty for arrays and .npy files.
    source: dict[str, object] = field(default_factory=dict)


#: The paper's defaults, by the paper's names.
DEFAULTS: dict[str, object] = {
    "n_sample": 1_000_000,
    "sample_dim": 2,
    "redund_nn": 1000,
    "redund_exp": 4.0,
    "rand_init": True,
    "seed": 0,
}


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def score(
    embeddings: Embeddings,
    *,
    n_sample: SampleCount = 1_000_000,
    sample_dim: int = 2,
    redund_nn: int = 1000,
    redund_exp: float = 4.0,
    rand_init: bool = True,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    backend: str = "auto",
    device: object = None,
    cache: CacheMode = "auto",
    cache_dir: PathLike | None = None,
    cache_progress: ProgressFn | None = None,
    column: str | None = None,
    id_column: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    sharding: str = "samples",
) -> np.ndarray:
    """ZCore scores of every row of `embeddings`, float32 in [0, 1].

    Args:
        embeddings: a 2-D array (float16/32/64, C or Fortran order, np.memmap
            included), a path to a .npy file (memory-mapped, never loaded
            whole), or a list of these concatenated along dimensions (same
            row count each). Or a table: a Parquet file or folder of parts
            (streamed into the column cache when large), a pyarrow Table, or
            a Hugging Face `datasets.Dataset` (README "Parquet, Arrow and
            Hugging Face"); see `column` and `id_column`.
        n_sample: random subspace samples (paper: n_sample), or "auto" to
            choose from the pool size (see `auto_n_sample`).
        sample_dim: dimensions per subspace (paper: sample_dim).
        redund_nn: nearest neighbours penalised per sample (paper: redund_nn).
        redund_exp: exponent of the inverse-distance penalty (paper: redund_exp).
        rand_init: add U(0, 1) noise per row before normalising (paper: rand_init).
        seed: seed of every random draw; the same seed gives bit-identical
            scores for any thread count.
        threads: worker threads; default all available cores.
        progress: called as progress(done, total) from the calling thread
            about every 50 ms; raising from it stops scoring and propagates.
        backend: "auto" (a CUDA GPU when PyTorch sees one, else the Rust CPU
            engine), "cpu" (the Rust engine), "cuda" (PyTorch on GPUs) or
            "torch" (PyTorch on `device`, default the CPU), or "ray" (the
            Rust engine on the workers of a Ray cluster, README "Ray"). The same seed
            draws the same samples on every backend; see README "GPU backend"
            for float16 storage and tolerances. `threads` is for "cpu" only.
        device: torch device(s) for "torch"/"cuda": "cuda:1", or a list to
            split the samples across; default every visible GPU for "cuda".
            With backend="ray": "cuda" makes every worker run the torch
            backend on one GPU of its own ("cpu": on its CPUs), with the
            torch backend's scores; default the Rust engine.
        cache: the out-of-core column cache of the CPU engine (README
            "Column cache"): "auto" writes a dimension-major copy of .npy
            inputs to `cache_dir` when its float32 size would exceed 1 GiB,
            and scores from it in place so a pool larger than RAM fits;
            "always" (True) for any .npy inputs; "never" (False) transposes
            in memory. A copy is built once and reused while the files are
            unchanged. Arrays are never cached, nor is anything on the torch
            backends.
        cache_dir: where cached copies live; default $ZCORE_FAST_CACHE_DIR,
            else $XDG_CACHE_HOME/zcore-fast, else ~/.cache/zcore-fast.
        cache_progress: called as cache_progress(done, total) (rows
            written) while a cache is built; `progress` counts samples only.
        column: a table input's embedding column (list<float>); default the
            first of "embedding", "embeddings", ... present, else its only
            list column.
        id_column: a table input's id column, reported as `ScoreReport.ids`
            (the row numbers stay the scores' positions).
        ray_address: backend="ray": the cluster's address; default Ray's own
            (RAY_ADDRESS, else "auto": a cluster started here).
        workers: backend="ray": how many workers share the work; default
            one per node, each with the node's CPUs.
        sharding: backend="ray": "samples" (every worker maps the whole
            pool from shared storage and scores a share of the samples) or
            "rows" (every worker holds a contiguous range of the rows, for
            pools too large for one node; README "Ray"). Both give the
            scores of one process, bit for bit.

    Returns:
        float32 array of shape (N,): higher means keep. `score_report`
        returns the same scores with the sample count used and a
        convergence measure.

    Raises:
        FileNotFoundError, ValueError, TypeError: for bad input, with what to do.
        ZCoreError: too little disk space for the column cache (before
            anything is written), and other engine failures.
        KeyboardInterrupt: on Ctrl-C (checked about every 50 ms).
    """
    return score_report(
        embeddings,
        n_sample=n_sample,
        sample_dim=sample_dim,
        redund_nn=redund_nn,
        redund_exp=redund_exp,
        rand_init=rand_init,
        seed=seed,
        threads=threads,
        progress=progress,
        backend=backend,
        device=device,
        cache=cache,
        cache_dir=cache_dir,
        cache_progress=cache_progress,
        column=column,
        id_column=id_column,
        ray_address=ray_address,
        workers=workers,
        sharding=sharding,
    ).scores


def score_report(
    embeddings: Embeddings,
    *,
    n_sample: SampleCount = 1_000_000,
    sample_dim: int = 2,
    redund_nn: int = 1000,
    redund_exp: float = 4.0,
    rand_init: bool = True,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    backend: str = "auto",
    device: object = None,
    cache: CacheMode = "auto",
    cache_dir: PathLike | None = None,
    cache_progress: ProgressFn | None = None,
    column: str | None = None,
    id_column: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    sharding: str = "samples",
) -> ScoreReport:
    """ZCore scores with the sample count used and a convergence measure.

    Same arguments as `score`. The convergence is the Spearman rho between
    the raw scores of the first and second half of the samples; it costs
    nothing extra (the halves sum exactly to the full run).
    """
    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be 'samples' or 'rows', got {sharding!r}")
    # Row shards are read by the workers, each its own rows: only a table
    # is resolved here (into one file or array the workers slice).
    keep_rows = sharding == "rows" and not any(map(is_table, _items(embeddings)))
    with (
        nullcontext(_row_sharded(embeddings))
        if keep_rows
        else resolve(
            embeddings,
            column=column,
            id_column=id_column,
            cache=cache,
            cache_dir=cache_dir,
            threads=threads,
            progress=cache_progress,
        )
    ) as table:
        report = _score_report(
            table.embeddings,
            n_sample=n_sample,
            sample_dim=sample_dim,
            redund_nn=redund_nn,
            redund_exp=redund_exp,
            rand_init=rand_init,
            seed=seed,
            threads=threads,
            progress=progress,
            backend=backend,
            device=device,
            # A table's copy is already dimension-major (or in memory).
            cache="never" if table.is_table else cache,
            cache_dir=cache_dir,
            cache_progress=cache_progress,
            ray_address=ray_address,
            workers=workers,
            sharding=sharding,
        )
    if not table.is_table:
        return report
    return replace(
        report,
        ids=table.ids,
        source=table.info,
        cache_path=table.cache_path,
        cache_seconds=table.cache_seconds,
    )


def _score_report(
    embeddings: Embeddings,
    *,
    n_sample: SampleCount,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    rand_init: bool,
    seed: int,
    threads: int | None,
    progress: ProgressFn | None,
    backend: str,
    device: object,
    cache: CacheMode,
    cache_dir: PathLike | None,
    cache_progress: ProgressFn | None,
    ray_address: str | None,
    workers: int | None,
    sharding: str = "samples",
) -> ScoreReport:
    rows_sharded = sharding == "rows"
    sources: list[Any] = row_inputs(embeddings) if rows_sharded else as_sources(embeddings)
    sample_dim = _positive_int("sample_dim", sample_dim)
    redund_nn = _positive_int("redund_nn", redund_nn)
    if n_sample == "auto":
        n_sample = auto_n_sample(_rows(sources), redund_nn)
    n_sample = _positive_int("n_sample", n_sample)
    threads = available_threads() if threads is None else _positive_int("threads", threads)
    if isinstance(redund_exp, bool) or not isinstance(redund_exp, Real):
        # float() would take "4" and say "could not convert" for "four".
        raise TypeError(f"redund_exp must be a number, got {redund_exp!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, fn in (("progress", progress), ("cache_progress", cache_progress)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable as {name}(done, total)")
    engine, devices = backends.resolve(backend, device)
    if engine != "ray" and (ray_address is not None or workers is not None or rows_sharded):
        raise ValueError("ray_address=, workers= and sharding= are for backend='ray'")
    if workers is not None:
        workers = _positive_int("workers", workers)
    if not rows_sharded:
        _check_sizes(sources)
    # The torch backends read the inputs themselves: only the Rust engine
    # (here or on Ray workers, which map the same path) scores from the
    # dimension-major cache.
    mode = check_mode(cache)  # refused on every backend alike
    if engine == "torch" or (engine == "ray" and devices is not None) or rows_sharded:
        mode = "never"
    # Resolved before any work, so a bad ZCORE_FAST_ISA fails at once.
    isa = _native.isa_level() if engine == "cpu" else None
    with cached(
        sources, cache=mode, cache_dir=cache_dir, threads=threads, progress=cache_progress
    ) as prepared:
        start = time.perf_counter()
        if engine == "cpu":
            run = partial(_native.score, isa=isa)
        elif engine == "ray":
            run = partial(
                _score_on_ray,
                ray_address=ray_address,
                workers=workers,
                device=devices,
                sharding=sharding,
            )
        else:
            run = backends.scorer(devices)
        scores, first, second = run(
            prepared.sources,
            n_sample=n_sample,
            sample_dim=sample_dim,
            redund_nn=redund_nn,
            redund_exp=float(redund_exp),
            rand_init=bool(rand_init),
            seed=int(seed) % (1 << 64),
            threads=threads,
            progress=progress,
        )
        seconds = time.perf_counter() - start
    return ScoreReport(
        scores=scores,
        n_sample=n_sample,
        convergence=spearman(first, second),
        seconds=seconds,
        parameters={
            "n_sample": n_sample,
            "sample_dim": sample_dim,
            "redund_nn": redund_nn,
            "redund_exp": float(redund_exp),
            "rand_init": bool(rand_init),
            "seed": int(seed),
            "threads": threads,
            "backend": engine,
            **(
                {
                    "ray_address": ray_address,
                    "workers": workers,
                    "device": devices,
                    "sharding": sharding,
                }
                if engine == "ray"
                else {}
            ),
            "isa": isa,
        },
        cache_path=prepared.path,
        cache_seconds=prepared.seconds,
        isa=isa,
    )


def _score_on_ray(
    sources: Sequence[str | np.ndarray],
    *,
    n_sample: int,
    sample_dim: int,
    redund_nn: int,
    redund_exp: float,
    rand_init: bool,
    seed: int,
    threads: int,
    progress: ProgressFn | None,
    ray_address: str | None,
    workers: int | None,
    device: object,
    sharding: str = "samples",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_native.score` with the samples split over Ray workers: the same
    (scores, halves) bit for bit; with `device` ("cuda" or "cpu") the
    workers run the torch backend, and the result is the torch backend's
    on that device kind. `threads` is ignored: each worker uses the CPUs
    (and GPU) Ray gave it."""
    from zcore_fast.backends import ray_backend

    if sharding == "rows":
        from zcore_fast.backends import ray_rows

        first, second = ray_rows.score_halves(
            sources,  # type: ignore[arg-type] # row_inputs: shards and arrays
            n_sample=n_sample,
            sample_dim=sample_dim,
            redund_nn=redund_nn,
            redund_exp=redund_exp,
            seed=seed,
            options=ray_backend.RayOptions(
                ray_address, workers, device=None if device is None else str(device)
            ),
            progress=progress,
        )
        return _native.finish_halves(first, second, rand_init=rand_init, seed=seed)
    first, second = ray_backend.score_halves(
        sources,
        n_sample=n_sample,
        sample_dim=sample_dim,
        redund_nn=redund_nn,
        redund_exp=redund_exp,
        seed=seed,
        isa=None,  # each node runs the best level it has: the bits are the same
        options=ray_backend.RayOptions(
            ray_address, workers, device=None if device is None else str(device)
        ),
        progress=progress,
    )
    if device is not None:
        from zcore_fast.backends import torch_backend

        params = torch_backend.Params(n_sample, sample_dim, redund_nn, redund_exp, rand_init, seed)
        return torch_backend.finish(first, second, params)
    return _native.finish_halves(first, second, rand_init=rand_init, seed=seed)


def _rows(sources: Sequence[object]) -> int:
    """Row count of the first source (the engine checks they all agree).
    0 for an unreadable file: the engine then reports what is wrong."""
    first = sources[0]
    if isinstance(first, np.ndarray):
        return int(first.shape[0])
    if isinstance(first, Shards):
        return first.n
    try:
        shape = read_header(str(first)).shape
    except (OSError, ValueError):
        return 0
    return int(shape[0]) if shape else 0


def _check_sizes(sources: list[object]) -> None:
    """Refuses a .npy file whose header promises more data than it holds
    (or more than can exist) before the column cache sizes a copy from that
    header: it would ask for exabytes of disk space. The engine reports
    every other problem with a file in its own words."""
    for source in sources:
        if isinstance(source, str):
            try:
                read_header(source)
            except SizeMismatchError:
                raise
            except (OSError, ValueError):
                pass


def _items(embeddings: object) -> list[object]:
    """The inputs of `embeddings` (one or a list)."""
    return list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]


def _row_sharded(embeddings: object) -> Resolved:
    """Row-sharded inputs as they are, described for summaries (`--json`:
    the shards and their first rows)."""
    items = _items(embeddings)
    inputs = row_inputs(items)  # opened once: the scoring takes them as they are
    return Resolved(inputs, info=describe_inputs(inputs, input_names(items)))
