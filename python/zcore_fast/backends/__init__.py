"""Scoring backends: the Rust CPU engine, or PyTorch on a GPU (or the CPU).

Importing this package never imports torch: `resolve` decides without it
where it can, and the torch modules are imported only when chosen.

- "cpu": the Rust engine (`zcore_fast._native`), multithreaded.
- "cuda": PyTorch on CUDA GPUs (every visible GPU unless `device` says
  which; the samples are split and the scores summed).
- "torch": PyTorch on `device` (default the CPU); what CI tests.
- "ray": the Rust engine on the workers of a Ray cluster, the samples split
  among them (`ray_backend.py`; Ray imported only then); with `device`
  ("cuda": one GPU per worker, or "cpu") the workers run the torch backend.
- "auto": "cuda" when PyTorch is installed and sees a GPU, else "cpu".
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Callable

import numpy as np

from zcore_fast._native import ZCoreError

#: Accepted values of `backend=`.
BACKENDS = ("auto", "cpu", "cuda", "torch", "ray")

_INSTALL = "install PyTorch (pip install 'zcore-fast[cuda]')"


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _gpu_device_files() -> bool:
    """Whether a GPU may be visible, judged without importing torch (which
    takes seconds): driver device files on Linux, and CUDA_VISIBLE_DEVICES
    not hiding every GPU. Elsewhere, assume one may be."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    if not sys.platform.startswith("linux"):
        return True
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")  # NVIDIA, ROCm


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a GPU (imports torch only when
    a GPU may be present)."""
    if not (_torch_installed() and _gpu_device_files()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve(backend: str, device: object = None) -> tuple[str, object]:
    """The engine to run ("cpu", "torch" or "ray") and the torch device(s) for it.

    Raises:
        ValueError: unknown backend, or a device given to the CPU engine.
        ImportError: a torch backend without PyTorch installed.
        ZCoreError: backend="cuda" and PyTorch sees no GPU.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        )
    if backend == "ray" and device is not None:
        # GPU workers: each Ray worker runs the torch backend on this kind.
        if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(
                f"backend='ray' takes device='cuda' (one GPU per worker) or 'cpu' (the torch "
                f"backend on each worker's CPUs), got {device!r}"
            )
        if not _torch_installed():
            raise ImportError(f"backend='ray' with device= needs PyTorch; {_INSTALL}")
        return backend, device.split(":")[0]
    if backend in ("cpu", "ray"):
        if device is not None:
            raise ValueError(
                f"device= is for backend='torch', 'cuda' or 'ray'; backend={backend!r} runs "
                "the Rust engine, which takes threads="
            )
        return backend, None
    if backend == "auto":
        if device is not None:
            backend = "torch"  # an explicit device means the torch backend
        elif cuda_available():
            backend = "cuda"
        else:
            return "cpu", None
    if not _torch_installed():
        raise ImportError(f"backend={backend!r} needs PyTorch, which is not installed; {_INSTALL}")
    if backend == "torch":
        return "torch", "cpu" if device is None else device
    if not cuda_available():
        raise ZCoreError(
            "backend='cuda' but PyTorch sees no CUDA GPU (check the driver, "
            "CUDA_VISIBLE_DEVICES and that torch is a CUDA build); use backend='cpu' or 'auto'"
        )
    if device is None:
        import torch

        return "torch", [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return "torch", device


def scorer(device: object) -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The torch backend on `device` as a drop-in for `_native.score`: same
    keywords (`threads` is ignored), same (scores, raw scores of the first
    half of the samples, of the second half). Imports torch when called."""

    def run(
        sources: Sequence[str | np.ndarray],
        *,
        n_sample: int,
        sample_dim: int,
        redund_nn: int,
        redund_exp: float,
        rand_init: bool,
        seed: int,
        threads: int | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from zcore_fast.backends import torch_backend

        params = torch_backend.Params(n_sample, sample_dim, redund_nn, redund_exp, rand_init, seed)
        return torch_backend.score_halves(sources, params, device=device, progress=progress)

    return run
