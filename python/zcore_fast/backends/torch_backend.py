"""ZCore scoring with PyTorch: batched samples on one or more devices.

The same scores as the CPU engine (rust/zcore.rs) for the same stored
values and seed: draws are the engine's counter-based streams (philox.py),
each sample's effect is computed exactly (search.py), and score changes are
summed in the engine's 2^-32 fixed point. Integer sums do not depend on
order, so results are identical for any batch size, block size or split of
the samples across devices. The only difference from the CPU engine is the
last-bit rounding of a normalised penalty (the float64 sum of a sample's
weights is taken in another order), at most 2^-32 per penalty.

Devices hold the pool dimension-major (columns.py); pools larger than a
device's memory stream blocks of dimensions from host memory (blocks.py).
Several devices split the samples and their fixed-point sums are added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from zcore_fast._native import ZCoreError
from zcore_fast.backends import blocks, columns, philox, placement, runner, search
from zcore_fast.backends.runner import Params, ProgressFn


def _build_pool(
    src: columns.Sources, device: torch.device, dtype: torch.dtype, layout: blocks.Layout
) -> torch.Tensor:
    """The (D, N) pool: on `device` when it fits there, else in host memory
    (pinned for fast copies to a GPU). Converted and checked on `device`."""
    if layout.resident:
        out = torch.empty((src.d, src.n), dtype=dtype, device=device)
    else:
        out = torch.empty((src.d, src.n), dtype=dtype, pin_memory=device.type == "cuda")
    columns.fill(src, out, device, check_overflow=dtype == torch.float16)
    return out


def _place(
    built: torch.Tensor, device: torch.device, layout: blocks.Layout
) -> blocks.Resident | blocks.Streamed:
    """The pool as `device` sees it, from a copy already built elsewhere."""
    if layout.resident:
        return blocks.Resident(built.to(device))
    return blocks.Streamed(built if built.device.type == "cpu" else built.cpu(), layout, device)


def score_halves(
    sources: Sequence[str | np.ndarray],
    params: Params,
    *,
    device: object = None,
    storage: str | None = None,
    batch_size: int | None = None,
    pool_memory: int | None = None,
    kernels: str = "auto",
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores as `_native.score` returns them: (float32 scores, raw scores of
    the first half of the samples, raw scores of the second half).

    Args:
        sources: paths and 2-D float arrays, concatenated along dimensions.
        params: the ZCore parameters.
        device: a torch device, a list of them (the samples are split and the
            sums added), or None for the CPU.
        storage: "float16" or "float32" storage of the pool; None: float16 on
            CUDA (float32 if any value exceeds float16's range), else float32.
        batch_size: samples per batch; None sizes batches to device memory.
        pool_memory: bytes of each device for the pool; None: 60% of free
            CUDA memory (unlimited on the CPU). A smaller pool streams blocks
            of dimensions from host memory.
        kernels: "torch", "triton" (fused CUDA kernels) or "auto" (Triton on
            CUDA when installed).
        progress: called as progress(done, total) from the calling thread.
    """
    _check(params, batch_size, pool_memory)
    src = _open(sources, params)
    devices = placement.resolve_devices(device)
    try:
        return _score(src, params, devices, storage, batch_size, pool_memory, kernels, progress)
    except torch.cuda.OutOfMemoryError as e:
        raise ZCoreError(
            f"GPU out of memory while scoring ({e}); free GPU memory, pass a smaller "
            "batch_size or pool_memory, or use backend='cpu'"
        ) from None


def _open(sources: Sequence[str | np.ndarray], params: Params) -> columns.Sources:
    """The inputs, opened, with at least `sample_dim` dimensions."""
    src = columns.open_sources(sources)
    if src.d < params.sample_dim:
        raise ValueError(
            f"embeddings have {src.d} dimension(s), fewer than sample_dim = "
            f"{params.sample_dim}; lower sample_dim or add dimensions"
        )
    return src


def _check(p: Params, batch_size: int | None, pool_memory: int | None) -> None:
    """The CPU engine's parameter checks, with its messages."""
    for name, value in (
        ("n_sample", p.n_sample),
        ("sample_dim", p.sample_dim),
        ("redund_nn", p.redund_nn),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not (math.isfinite(p.redund_exp) and p.redund_exp >= 0):
        raise ValueError(f"redund_exp must be a finite number >= 0, got {p.redund_exp}")
    if not 0 <= p.seed < 1 << 64:
        raise ValueError(f"seed must be in 0 .. 2^64 - 1, got {p.seed}")
    for option, setting in (("batch_size", batch_size), ("pool_memory", pool_memory)):
        if setting is not None and (
            isinstance(setting, bool) or not isinstance(setting, int) or setting < 1
        ):
            raise ValueError(f"{option} must be a positive integer or None, got {setting!r}")


def score_range(
    sources: Sequence[str | np.ndarray],
    params: Params,
    start: int,
    end: int,
    *,
    device: object = None,
    storage: str | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples start..end of a run of `params.n_sample`: their contribution
    to the fixed-point (int64) raw scores of the run's first and second
    half. Summed over ranges that tile the run, `finish` turns them into
    exactly what `score_halves` returns on the same device kind and
    storage (a Ray worker's share; `backends/ray_backend.py`)."""
    _check(params, None, None)
    if not 0 <= start <= end <= params.n_sample:
        raise ValueError(f"sample range {start}..{end} is not within 0..{params.n_sample}")
    src = _open(sources, params)
    devices = placement.resolve_devices(device)
    scorers = _fitting_scorers(src, params, devices, storage, None, None, "auto")
    return runner.run_all(scorers, params, progress, span=(start, end))


def finish(
    first: np.ndarray, second: np.ndarray, params: Params, device: object = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, first half, second half) from a run's summed fixed-point
    halves, as `score_halves` returns them. The noise is drawn on `device`:
    the counter-based streams give the same bits on every device."""
    raw = (first + second).astype(np.float64) / search.FIXED_ONE
    if params.rand_init:
        raw += _noise(params.seed, len(raw), torch.device(device))
    return (
        _normalise(raw),
        first.astype(np.float64) / search.FIXED_ONE,
        second.astype(np.float64) / search.FIXED_ONE,
    )


def _fitting_scorers(
    src: columns.Sources,
    p: Params,
    devices: list[torch.device],
    storage: str | None,
    batch_size: int | None,
    pool_memory: int | None,
    kernels: str,
) -> list[runner.DeviceScorer]:
    """`_scorers`, the pool stored as float16 by default and as float32 when
    its values do not fit float16 (an explicit `storage` is kept)."""
    try:
        return _scorers(src, p, devices, storage, batch_size, pool_memory, kernels)
    except columns.Float16OverflowError:
        if storage is not None:
            raise
        return _scorers(src, p, devices, "float32", batch_size, pool_memory, kernels)


def _scorers(
    src: columns.Sources,
    p: Params,
    devices: list[torch.device],
    storage: str | None,
    batch_size: int | None,
    pool_memory: int | None,
    kernels: str,
) -> list[runner.DeviceScorer]:
    """The pool built once and placed on every device, with its scorer."""
    first = devices[0]
    chosen = [placement.choose_kernels(kernels, dev, p.sample_dim) for dev in devices]
    dtype = placement.storage_dtype(storage, first)
    itemsize = torch.empty((), dtype=dtype).element_size()
    built: torch.Tensor | None = None
    scorers: list[runner.DeviceScorer] = []
    for dev, kind in zip(devices, chosen):
        layout, work = placement.plan_memory(dev, pool_memory, src, itemsize, p.sample_dim)
        if built is None:
            # Built once, on the first device; the others copy it.
            built = _build_pool(src, dev, dtype, layout)
            stats = columns.stats_in_blocks(built, dev, work)
            sub = built[:, columns.subsample_rows(src.n).to(built.device)].float()
            plan = search.plan_search(src.n, sub.shape[1], p.redund_nn, p.redund_exp)
        fused = plan if kind == "triton" else None
        scorers.append(
            runner.DeviceScorer(
                _place(built, dev, layout),
                (stats[0].to(dev), stats[1].to(dev), stats[2].to(dev)),
                sub.to(dev),
                p,
                batch_size or placement.batch_size(src.n, p.sample_dim, itemsize, work, fused),
                kind,
            )
        )
    return scorers


def _score(
    src: columns.Sources,
    p: Params,
    devices: list[torch.device],
    storage: str | None,
    batch_size: int | None,
    pool_memory: int | None,
    kernels: str,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scorers = _fitting_scorers(src, p, devices, storage, batch_size, pool_memory, kernels)
    first, second = runner.run_all(scorers, p, progress)
    return finish(first, second, p, devices[0])


def _noise(seed: int, n: int, device: torch.device) -> np.ndarray:
    """`rand_init` noise of every row, float64, computed a chunk at a time."""
    step = 1 << 22
    parts = [philox.noise(seed, at, min(step, n - at), device).cpu() for at in range(0, n, step)]
    return torch.cat(parts).numpy()


def _normalise(raw: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] in float64, then float32; a constant
    vector maps to zeros (the CPU engine's `normalise`)."""
    lo, hi = raw.min(), raw.max()
    span = hi - lo
    if not span > 0:
        return np.zeros(raw.shape, dtype=np.float32)
    return ((raw - lo) / span).astype(np.float32)
