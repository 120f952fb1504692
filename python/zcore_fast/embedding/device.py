"""Device, precision and the numeric settings that make a run reproducible."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

#: Accepted values of `precision`.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA GPU when one is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name}: no CUDA GPU is visible to PyTorch; use --device cpu (or auto)"
        )
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is fp16 autocast on a GPU (its tensor cores) and fp32 on the CPU."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bf16 support; use --precision fp16 or fp32")
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the forward pass; entered once for the whole run so
    that the casts of the weights are cached rather than redone every batch."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST[precision])


@contextlib.contextmanager
def reproducible() -> Iterator[None]:
    """cuDNN picks fixed, deterministic algorithms (no autotuning), so a resumed
    run computes the same bytes as an uninterrupted one; restored on exit."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def default_workers(device: torch.device) -> int:
    """Decoding processes. On a GPU as many as there are cores (up to 16): the
    GPU outruns any one decoder. On the CPU decoding competes with the forward
    pass for the same cores, so one worker per 4 cores, none on 2 cores or
    fewer (there decoding between batches measured 96 % of the pure forward
    rate; benches/bench_embed.py)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if device.type == "cuda":
        return min(16, cores)
    return min(4, cores // 4)
