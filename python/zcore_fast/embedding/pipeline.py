"""The embedding loop: batches from the loader, forward passes on the device,
rows into the partial files, periodic checkpoints of the progress record.

On a GPU the loop runs one batch ahead: batch k+1 is launched before the rows
of batch k are copied back and written, so the device never waits on the
host. Progress is published as one immutable `Cursor`, so an interrupt
between two statements can never leave a record that claims unwritten rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from zcore_fast.embedding.loader import Batch, make_loader
from zcore_fast.embedding.models import LoadedModel
from zcore_fast.embedding.state import Progress
from zcore_fast.embedding.writer import PartialArray

ProgressFn = Callable[[int, int], None]


class Cursor(NamedTuple):
    """Images done, rows written, skipped entries recorded: replaced whole,
    never mutated, so it is always self-consistent."""

    done: int
    rows: int
    skipped: int


@dataclass
class Job:
    """Everything the loop needs (built by run.embed)."""

    paths: Sequence[str]
    names: Sequence[str]
    models: Sequence[LoadedModel]
    device: torch.device
    out_dtype: np.dtype
    batch_size: int
    workers: int
    strict: bool
    partials: Sequence[PartialArray]  # one (concatenated) or one per model
    progress: Progress
    record_path: Any  # Path of the progress record
    on_progress: ProgressFn | None
    checkpoint_every: float


class _InFlight(NamedTuple):
    batch: Batch
    outputs: list[torch.Tensor]  # on the host (pinned) once `event` has fired
    event: Any | None  # torch.cuda.Event, None on the CPU


def probe_dim(model: LoadedModel, device: torch.device) -> int:
    """The feature size, from one forward pass on a blank image; fails early
    and clearly when the module does not return (batch, dim) features."""
    from PIL import Image

    x = model.transform(Image.new("RGB", (256, 256), (128, 128, 128)))
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise TypeError(
            f"{model.spec}: the transform must turn a PIL image into a (C, H, W) tensor; it "
            f"returned {type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
        )
    y = _features(model, x.unsqueeze(0).to(device), 1)
    return int(y.shape[1])


def run_loop(job: Job) -> Cursor:
    """Embeds the images from `job.progress.done` on; returns the final
    cursor. On any exception the progress so far is checkpointed, then the
    exception propagates (the partial files stay for a resume)."""
    p = job.progress
    skipped = list(p.skipped)
    cursor = Cursor(p.done, p.rows, len(skipped))
    started = time.perf_counter()
    last_checkpoint = started
    seconds_before = p.seconds  # time spent by earlier, interrupted runs

    def checkpoint(at: Cursor) -> None:
        for partial in job.partials:
            partial.flush()  # rows first, then the record that claims them
        p.done, p.rows, p.skipped = at.done, at.rows, skipped[: at.skipped]
        p.seconds = round(seconds_before + time.perf_counter() - started, 3)
        p.save(job.record_path)

    def complete(flight: _InFlight) -> None:
        nonlocal cursor, last_checkpoint
        batch = flight.batch
        if flight.event is not None:
            flight.event.synchronize()
        if batch.skipped and job.strict:
            index, reason = batch.skipped[0]
            raise ValueError(
                f"{job.paths[index]}: {reason} (--strict stops at the first unreadable image; "
                "without it such images are skipped and listed in the manifest)"
            )
        arrays = [out.numpy() for out in flight.outputs]
        _check_finite(arrays, batch, job)
        for partial, block in zip(job.partials, arrays):
            partial.write(cursor.rows, block)
        skipped.extend(
            {"index": i, "path": job.names[i], "reason": reason} for i, reason in batch.skipped
        )
        # One store publishes the batch (see the module docstring).
        cursor = Cursor(cursor.done + batch.size, cursor.rows + len(batch.indices), len(skipped))
        if job.on_progress is not None:
            job.on_progress(cursor.done, p.total)
        if time.perf_counter() - last_checkpoint >= job.checkpoint_every:
            checkpoint(cursor)
            last_checkpoint = time.perf_counter()

    loader = make_loader(
        job.paths,
        [m.transform for m in job.models],
        start=cursor.done,
        batch_size=job.batch_size,
        workers=job.workers,
        pin_memory=job.device.type == "cuda",
    )
    batches = iter(loader)
    try:
        pending: _InFlight | None = None
        for batch in batches:
            flight = _launch(batch, job)
            if pending is not None:
                complete(pending)
            pending = flight
        if pending is not None:
            complete(pending)
    except BaseException:
        try:
            checkpoint(cursor)
        except Exception:  # the first error matters; the last saved record stays valid
            pass
        raise
    finally:
        del batches  # shuts the worker processes down now, not when a traceback dies
    p.seconds = round(seconds_before + time.perf_counter() - started, 3)
    p.done, p.rows, p.skipped = cursor.done, cursor.rows, skipped
    return cursor


def _launch(batch: Batch, job: Job) -> _InFlight:
    """Starts the forward pass of a batch and the copy of its features to the
    host; returns without waiting for either on a GPU."""
    n = len(batch.indices)
    if n == 0:
        return _InFlight(batch, [], None)
    feats = [
        _features(m, x.to(job.device, non_blocking=True), n)
        for m, x in zip(job.models, batch.inputs)
    ]
    torch_dtype = torch.float16 if job.out_dtype == np.float16 else torch.float32
    feats = [f.to(torch_dtype) for f in feats]  # on the device: half the bytes to copy back
    if len(job.partials) == 1 and len(feats) > 1:
        feats = [torch.cat(feats, dim=1)]
    # non_blocking to the CPU lands in pinned memory, so the copy is asynchronous.
    outputs = [f.to("cpu", non_blocking=True) for f in feats]
    event = None
    if job.device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
    return _InFlight(batch, outputs, event)


def _features(model: LoadedModel, x: torch.Tensor, n: int) -> torch.Tensor:
    y = model.module(x)
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != n:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(
            f"{model.spec}: the module returned {shape} for a batch of {n}; it must return "
            "(batch, dim) features (wrap it in a factory that pools or selects them)"
        )
    if not y.is_floating_point():
        raise TypeError(f"{model.spec}: the module returned {y.dtype} features; expected floats")
    return y


def _check_finite(arrays: list[np.ndarray], batch: Batch, job: Job) -> None:
    for block in arrays:
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            first = job.names[batch.indices[int(rows[0])]]
            hint = (
                " float16 overflows beyond +-65504: use --dtype float32"
                if job.out_dtype == np.float16
                else " try --precision fp32"
            )
            raise ValueError(
                f"the model gave NaN/Inf features for {rows.size} image(s) of a batch (first: "
                f"{first});{hint}"
            )
