"""Where the torch backend runs: devices, memory budgets, storage, kernels."""

from __future__ import annotations

import torch

from zcore_fast.backends import blocks, columns, search, triton_search

_GIB = 1 << 30
#: Largest batch for the fused kernels. Each batch costs the host about 150
#: launches and one synchronisation (the samples to redo), which small pools
#: cannot hide: on an H200, 10^6 samples at N = 50,000 took 0.98 s in batches
#: of 4,096 and 0.76 s in batches of 16,384.
FUSED_BATCH_MAX = 16384


def resolve_devices(device: object) -> list[torch.device]:
    """One device, a sequence of them, or None (the CPU)."""
    if device is None:
        return [torch.device("cpu")]
    items = list(device) if isinstance(device, (list, tuple)) else [device]
    if not items:
        raise ValueError("device list is empty; pass a device such as 'cuda:0' or 'cpu'")
    out = []
    for item in items:
        try:
            dev = torch.device(item)  # type: ignore[arg-type]
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"not a torch device: {item!r} ({e})") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {item!r}: PyTorch sees no CUDA GPU")
            index = torch.cuda.current_device() if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {item!r}: only {torch.cuda.device_count()} CUDA GPU(s) visible"
                )
            dev = torch.device("cuda", index)
        out.append(dev)
    return out


def plan_memory(
    device: torch.device,
    pool_memory: int | None,
    src: columns.Sources,
    itemsize: int,
    sample_dim: int,
) -> tuple[blocks.Layout, int]:
    """The pool's layout on `device` and the bytes left for per-batch work.

    CUDA: the pool may take `pool_memory` bytes (default 60% of the free
    memory); the work gets half of what the pool leaves, at most 8 GiB. The
    CPU: the pool is host memory anyway (streamed only when `pool_memory`
    asks for it, which tests do); 256 MiB of work.
    """
    if device.type != "cuda":
        budget = (1 << 62) if pool_memory is None else pool_memory
        return blocks.layout_for(src.d, src.n, itemsize, sample_dim, budget), 256 << 20
    free, _ = torch.cuda.mem_get_info(device)
    budget = int(free * 0.6) if pool_memory is None else pool_memory
    layout = blocks.layout_for(src.d, src.n, itemsize, sample_dim, budget)
    pool = layout.slots * layout.block_dims * src.n * itemsize
    return layout, int(min(8 * _GIB, max(free - pool, free // 8) // 2))


def batch_size(
    n: int, sample_dim: int, itemsize: int, work: int, fused: search.Plan | None = None
) -> int:
    """Samples per batch whose work fits in `work` bytes. Plain PyTorch holds
    per sample the gathered columns, float32 distances, a float32 temporary
    and a mask (about n * (sample_dim * itemsize + 9) bytes). The fused Triton
    kernels (`fused`: their plan) keep distances in registers: per sample only
    the candidate keys, the subsample distances that give the radius and the
    float64 penalties, so far larger batches fit (fewer launches and syncs)."""
    if fused is not None and fused.sub_rank:
        # Keys counted twice: top-k's temporaries.
        subsample = 4 * columns.SUBSAMPLE_ROWS * (sample_dim + 1)
        per_sample = 16 * fused.capacity + subsample + 64 * fused.k
        return int(max(1, min(FUSED_BATCH_MAX, work // per_sample)))
    per_sample = n * (sample_dim * itemsize + 9)
    return int(max(1, min(4096, work // per_sample)))


def default_storage(device: torch.device) -> torch.dtype:
    """float16 on CUDA (half the memory traffic per sample), float32 on the
    CPU (no float16 arithmetic to save there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def storage_dtype(storage: str | None, device: torch.device) -> torch.dtype:
    """The pool's dtype: `storage` by name, or the device's default."""
    if storage is None:
        return default_storage(device)
    table = {"float16": torch.float16, "float32": torch.float32}
    if storage not in table:
        raise ValueError(f"storage must be 'float16' or 'float32', got {storage!r}")
    return table[storage]


def choose_kernels(kernels: str, device: torch.device, sample_dim: int) -> str:
    """The kernels for `device`, "torch" or "triton": "auto" takes Triton on CUDA when it
    is installed; an explicit "triton" that cannot run is an error."""
    if kernels not in ("auto", "torch", "triton"):
        raise ValueError(f"kernels must be 'auto', 'torch' or 'triton', got {kernels!r}")
    if kernels == "auto":
        ok = device.type == "cuda" and triton_search.available()
        return "triton" if ok and sample_dim <= triton_search.MAX_SAMPLE_DIM else "torch"
    if kernels == "triton":
        triton_search.require(device, sample_dim)
    return kernels
