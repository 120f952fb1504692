"""Optional fused Triton kernels for the two passes over the pool.

Plain PyTorch materialises each batch's gathered columns and an (S, N)
distance matrix several times per sample. These kernels read a sample's
columns once per pass and keep distances in registers:

- `nearest`: the coverage winner, as the minimum of int64 keys
  (distance bits << 32) | row, so ties go to the lowest row exactly;
- `collect`: the keys of the rows within a sample's radius (the winner
  excluded), appended to per-sample slots through an atomic counter.

Candidate order in the slots depends on scheduling, but the exact top-k of
unique keys does not, so results equal `search.sample_effects` bit for bit.
Samples whose radius holds too few rows or overflows the slots are redone
with plain PyTorch. Distances are summed exactly as there (float32, dims
order, no multiply, so no fused multiply-add can change the rounding).

Never required: `available()` is False without Triton or a GPU, and tests
run these kernels on the CPU under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from zcore_fast.backends import search

#: Largest sample_dim the kernels are compiled for (dims are unrolled).
MAX_SAMPLE_DIM = 8
#: Rows per program step, and steps per program.
BLOCK = 1024
ITERS = 8


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton is installed and can run here (a CUDA GPU, or the
    interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return _interpreting() or torch.cuda.is_available()


def require(device: torch.device, sample_dim: int) -> None:
    """Raises ValueError saying why kernels="triton" cannot run here."""
    if not available():
        raise ValueError(
            "kernels='triton' needs Triton and a CUDA GPU (pip install triton); use kernels='torch'"
        )
    if device.type != "cuda" and not _interpreting():
        raise ValueError(f"kernels='triton' runs on CUDA devices, not {device}")
    if sample_dim > MAX_SAMPLE_DIM:
        raise ValueError(
            f"kernels='triton' supports sample_dim <= {MAX_SAMPLE_DIM}, got {sample_dim}; "
            "use kernels='torch'"
        )


def _grid(s: int, n: int) -> tuple[int, int]:
    return s, -(-n // (BLOCK * ITERS))


def nearest(columns: torch.Tensor, dims: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Coverage winners (S,) int64: the first row at the minimum distance."""
    from zcore_fast.backends.triton_kernels import nearest_kernel

    s, m = dims.shape
    n = columns.shape[1]
    grid = _grid(s, n)
    partial = torch.empty(grid, dtype=torch.int64, device=columns.device)
    nearest_kernel[grid](
        columns,
        dims.contiguous(),
        q.contiguous(),
        partial,
        n,
        grid[1],
        m=m,
        block=BLOCK,
        iters=ITERS,
    )
    return partial.min(dim=1).values & 0xFFFF_FFFF


def collect(
    columns: torch.Tensor,
    dims: torch.Tensor,
    centres: torch.Tensor,
    winners: torch.Tensor,
    limit: torch.Tensor,
    capacity: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys (S, capacity) padded with INT64_MAX, counts (S,)) of the rows
    within `limit` of each centre, the winner excluded; a count above
    `capacity` means some keys were dropped."""
    from zcore_fast.backends.triton_kernels import collect_kernel

    s, m = dims.shape
    n = columns.shape[1]
    grid = _grid(s, n)
    keys = torch.full((s, capacity), search.INT64_MAX, dtype=torch.int64, device=columns.device)
    counts = torch.zeros(s, dtype=torch.int32, device=columns.device)
    collect_kernel[grid](
        columns,
        dims.contiguous(),
        centres.contiguous(),
        winners.contiguous(),
        limit.contiguous(),
        counts,
        keys,
        n,
        capacity,
        m=m,
        block=BLOCK,
        iters=ITERS,
    )
    return keys, counts


def sample_effects(
    columns: torch.Tensor,
    dims: torch.Tensor,
    global_dims: torch.Tensor,
    q: torch.Tensor,
    sub: torch.Tensor,
    plan: search.Plan,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`search.sample_effects` with the passes over the pool fused."""
    if not plan.sub_rank:  # small pools: no pruning, plain PyTorch is as good
        return search.sample_effects(columns, dims, global_dims, q, sub, plan)
    winners = nearest(columns, dims, q)
    centres = columns[dims, winners[:, None]].float()
    limit = search.radius(sub, global_dims, centres, plan.sub_rank)
    keys, counts = collect(columns, dims, centres, winners, limit, plan.capacity)
    top = keys.topk(plan.k, dim=1, largest=False).values
    redo = torch.nonzero((counts < plan.k) | (counts > plan.capacity))[:, 0]
    for at in range(0, redo.numel(), search.FULL_CHUNK):
        part = redo[at : at + search.FULL_CHUNK]
        gathered = columns[dims[part]]  # (R, m, N)
        dist = search.l1(gathered, centres[part])
        dist[torch.arange(part.numel(), device=dist.device), winners[part]] = torch.inf
        top[part] = search.full_selection(dist, plan.k)
    rows, fixed = search.penalties(top, plan.redund_exp)
    return winners, rows, fixed
