"""Pools larger than device memory: stream blocks of dimensions.

A sample reads only its `sample_dim` columns. When the whole (D, N) pool
does not fit on the device, it stays in host memory cut into blocks of
dimensions, and the device holds `sample_dim` block slots. Samples are
grouped by the set of blocks their dimensions fall in; groups run in
lexicographic order, so the first block of a group stays resident while the
others cycle: about n_blocks^2 / 2 block copies per pass over a chunk of
samples, whatever the number of samples. Processing order never changes
results (scores are summed as integers).

When the pool fits, `Resident` is the same interface over one block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """How the pool's dimensions are cut into blocks."""

    #: Dimensions per block (all of them when resident).
    block_dims: int
    #: Number of blocks.
    n_blocks: int
    #: Device slots, each holding one block.
    slots: int

    @property
    def resident(self) -> bool:
        """Whether the whole pool lives on the device."""
        return self.n_blocks == 1


def layout_for(d: int, n: int, itemsize: int, sample_dim: int, budget: int) -> Layout:
    """The layout of a (d, n) pool whose device share is `budget` bytes."""
    if d * n * itemsize <= budget:
        return Layout(d, 1, 1)
    block = budget // (sample_dim * n * itemsize)
    if block < 1:
        need = sample_dim * n * itemsize
        raise ValueError(
            f"device memory for the pool ({budget:,} bytes) cannot hold {sample_dim} columns "
            f"of {n:,} rows ({need:,} bytes); free device memory, use float16 storage, or "
            "score on the CPU engine (backend='cpu')"
        )
    n_blocks = math.ceil(d / block)
    return Layout(block, n_blocks, min(sample_dim, n_blocks))


class Resident:
    """The whole pool on the device: every sample is one group."""

    def __init__(self, columns: torch.Tensor) -> None:
        self.columns = columns
        self.layout = Layout(columns.shape[0], 1, 1)
        self.loads = 0

    def groups(self, dims: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(local dims, sample indices) per group: here, all samples."""
        yield dims, torch.arange(dims.shape[0], device=dims.device)


class Streamed:
    """Blocks of dimensions copied from `host` (D, N) into device slots."""

    def __init__(self, host: torch.Tensor, layout: Layout, device: torch.device) -> None:
        self.host = host
        self.layout = layout
        b = layout.block_dims
        self.columns = torch.empty(
            (layout.slots * b, host.shape[1]), dtype=host.dtype, device=device
        )
        self.owner = [-1] * layout.slots
        self.slot_of = torch.full((layout.n_blocks,), -1, dtype=torch.int64, device=device)
        #: Block copies so far (tests and benchmarks read it).
        self.loads = 0

    def _hold(self, blocks: list[int]) -> None:
        """Makes `blocks` resident, evicting only blocks outside the set."""
        free = [i for i, owner in enumerate(self.owner) if owner not in blocks]
        b = self.layout.block_dims
        for block in blocks:
            if block in self.owner:
                continue
            slot = free.pop(0)
            part = self.host[block * b : (block + 1) * b]
            self.columns[slot * b : slot * b + part.shape[0]].copy_(part, non_blocking=True)
            if self.owner[slot] >= 0:
                self.slot_of[self.owner[slot]] = -1
            self.owner[slot] = block
            self.slot_of[block] = slot
            self.loads += 1

    def groups(self, dims: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(local dims, sample indices) per group of samples sharing a block
        set, with that set resident while the group runs."""
        b = self.layout.block_dims
        blocks = torch.sort(dims // b, dim=1).values
        sets, group = torch.unique(blocks, dim=0, return_inverse=True)  # sorted: lexicographic
        order = torch.argsort(group, stable=True)
        sizes = torch.bincount(group, minlength=sets.shape[0]).tolist()
        at = 0
        for block_set, size in zip(sets.tolist(), sizes):
            idx = order[at : at + size]
            at += size
            self._hold(sorted(set(block_set)))
            mine = dims[idx]
            yield self.slot_of[mine // b] * b + mine % b, idx
