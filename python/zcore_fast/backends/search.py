"""What a batch of samples does to the scores, exactly as the CPU engine.

For each sample (a subspace `dims` and a point `q`): the coverage winner
(nearest row to q in L1, ties to the lowest row), then the k nearest other
rows to the winner ordered by (distance, row), and their penalties
(rust/zcore.rs `run_sample` and `penalty_of`).

Exactness: distances are summed in float32 in `dims` order from the stored
values converted to float32, as the CPU engine sums them, so every distance
is bit-identical; the winner is the first minimum (`argmin` returns the
first); neighbours are selected on one int64 key per row, (distance bits
<< 32) | row, which orders like (distance, row) because non-negative floats
order like their bits, so ties need no special handling.

Speed: a full top-k over N rows per sample is the slow part of plain
batched PyTorch. As in the CPU engine, a fixed row subsample first gives a
radius that holds the k nearest rows with high probability; only rows within
it become candidates for the exact top-k; a sample whose radius holds too few
(or too many) rows is redone with a full selection, so results never depend
on the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

INT64_MAX = torch.iinfo(torch.int64).max
#: Fixed-point scale of score sums: 2^32 units per score point, as the CPU
#: engine. Integer sums do not depend on order, so results do not depend on
#: batch size, block size or device split.
FIXED_ONE = 1 << 32
#: Extra subsample ranks beyond the expected one, in standard deviations.
MARGIN_SD = 3.0
#: Samples of a batch given a full selection at once (bounds its memory).
FULL_CHUNK = 16


@dataclass(frozen=True)
class Plan:
    """How one pool's samples search for neighbours."""

    #: Rows in the pool.
    n: int
    #: Neighbours penalised per sample: min(redund_nn, n - 1).
    k: int
    #: Exponent of the inverse-distance penalty.
    redund_exp: float
    #: Subsample rank whose distance bounds the candidates; 0: no pruning
    #: (every row is a candidate; small pools, or k close to n).
    sub_rank: int
    #: Candidate slots per sample when pruning.
    capacity: int


def plan_search(n: int, sub_n: int, redund_nn: int, redund_exp: float) -> Plan:
    """The search plan for a pool of `n` rows with a `sub_n`-row subsample."""
    k = min(redund_nn, n - 1)
    # Subsample rows expected within the k-th neighbour's distance (the
    # winner itself included), plus a margin: the radius then holds k rows
    # except rarely, and those rare samples are redone in full.
    expected = (k + 1) * sub_n / n
    rank = math.ceil(expected + MARGIN_SD * math.sqrt(expected) + 2)
    candidates = rank * n / sub_n
    if rank >= sub_n or candidates > n / 4:
        return Plan(n, k, redund_exp, 0, 0)
    capacity = 128 * math.ceil(max(2 * k, 2 * candidates) / 128)
    return Plan(n, k, redund_exp, rank, min(capacity, n))


def l1(
    columns: torch.Tensor, points: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 distances (S, N), float32, of every row to each sample's point.

    `columns` (S, m, N) holds each sample's m columns (any float dtype);
    `points` (S, m) float32. Summed in float32 in column order, each value
    first converted to float32: the CPU engine's arithmetic, bit for bit.
    """
    # Mixed float16 - float32 operands are computed in float32 after an
    # exact conversion, in the same pass (no float32 copy of the columns).
    m = columns.shape[1]
    out = torch.sub(columns[:, 0], points[:, :1], out=out).abs_()
    for j in range(1, m):
        out += torch.sub(columns[:, j], points[:, j : j + 1]).abs_()
    return out


def keys_of(dist: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """int64 keys (distance bits << 32) | row: they order like (distance, row)
    for non-negative float32 distances (+inf included)."""
    return (dist.view(torch.int32).to(torch.int64) << 32) | rows


def radius(sub: torch.Tensor, dims: torch.Tensor, centres: torch.Tensor, rank: int) -> torch.Tensor:
    """Per sample, the `rank`-th smallest distance from its centre to the
    subsample `sub` (D, sub_n) float32, over global `dims` (S, m)."""
    d = l1(sub[dims], centres)
    return d.kthvalue(rank, dim=1).values


def full_selection(dist: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest keys of every row of `dist` (S, N), ascending (topk
    returns them sorted)."""
    rows = torch.arange(dist.shape[1], dtype=torch.int64, device=dist.device)
    parts = [
        keys_of(dist[i : i + FULL_CHUNK], rows).topk(k, dim=1, largest=False).values
        for i in range(0, dist.shape[0], FULL_CHUNK)
    ]
    return torch.cat(parts)


def pruned_selection(dist: torch.Tensor, limit: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The k smallest keys per row of `dist` (S, N), ascending: exact top-k
    among the rows within `limit`, or a full selection where those are too
    few or overflow the candidate slots."""
    s, k = dist.shape[0], plan.k
    within = dist <= limit[:, None]
    counts = torch.count_nonzero(within, dim=1)
    ok = (counts >= k) & (counts <= plan.capacity)
    within &= ok[:, None]
    taken = counts * ok
    sample, row = within.nonzero(as_tuple=True)  # sample-major, rows ascending
    first = torch.cumsum(taken, 0) - taken
    slot = torch.arange(sample.shape[0], device=dist.device) - first[sample]
    keys = torch.full((s, plan.capacity), INT64_MAX, dtype=torch.int64, device=dist.device)
    keys[sample, slot] = keys_of(dist[sample, row], row)
    top = keys.topk(k, dim=1, largest=False).values
    redo = torch.nonzero(~ok)[:, 0]
    if redo.numel():
        top[redo] = full_selection(dist[redo], k)
    return top


def _pow_int(x: torch.Tensor, e: int) -> torch.Tensor:
    """x^e by repeated squaring, the CPU engine's `pow_u32`, op for op."""
    acc, base = torch.ones_like(x), x
    while e > 0:
        if e & 1:
            acc = acc * base
        base = base * base
        e >>= 1
    return acc


SUM_UNIT = float(1 << 52)


def _exact_sum(w: torch.Tensor) -> torch.Tensor:
    """Row sums of weights in [0, 1] as the CPU engine (rust/penalty.rs)
    forms them: each weight rounded down to a multiple of 2^-52 and the
    integers summed exactly, so the order of terms cannot matter. The
    integer total is split into 32-bit halves to stay within int64, then
    rounded to float64 once, as the engine's u128 total is."""
    units = (w * SUM_UNIT).to(torch.int64)
    low_mask = (1 << 32) - 1
    high = (units >> 32).sum(dim=1)
    low = (units & low_mask).sum(dim=1)
    high = high + (low >> 32)
    low = low & low_mask
    return (high.double() * float(1 << 32) + low.double()) / SUM_UNIT


def penalties(top: torch.Tensor, redund_exp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, fixed-point penalties), both (S, k) int64, from ascending keys.

    A nearest neighbour at distance 0 (a duplicate in the subspace) takes the
    whole penalty; otherwise w_j = (d0 / d_j)^exp normalised to sum 1, in
    float64 (scaling by the smallest distance d0 keeps every ratio in
    (0, 1], so no power overflows), rounded to 2^-32 as the CPU engine does.
    """
    rows = top & 0xFFFF_FFFF
    dist = (top >> 32).to(torch.int32).view(torch.float32).double()
    d0 = dist[:, :1]
    ratio = d0 / dist
    e = redund_exp
    w = _pow_int(ratio, int(e)) if e == int(e) and 0 <= e <= 64 else ratio.pow(e)
    w = w * (1.0 / _exact_sum(w))[:, None]  # as the CPU engine: one division per sample
    first_only = torch.zeros_like(w)
    first_only[:, 0] = 1.0
    w = torch.where(d0 == 0, first_only, w)
    return rows, (w * FIXED_ONE + 0.5).to(torch.int64)


def sample_effects(
    columns: torch.Tensor,
    dims: torch.Tensor,
    global_dims: torch.Tensor,
    q: torch.Tensor,
    sub: torch.Tensor,
    plan: Plan,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Winners (S,), penalised rows (S, k) and fixed-point penalties (S, k)
    of a batch of samples, with plain PyTorch ops.

    `columns` (C, N) is the resident pool (or block slots), `dims` (S, m)
    index it; `global_dims` index the subsample `sub` (D, sub_n).
    """
    s, m = dims.shape
    gathered = columns.index_select(0, dims.reshape(-1)).view(s, m, plan.n)
    dist = l1(gathered, q)
    winners = dist.argmin(dim=1)  # the first minimum: ties go to the lowest row
    every = torch.arange(s, device=dims.device)
    centres = gathered[every, :, winners].float()
    l1(gathered, centres, out=dist)
    dist[every, winners] = torch.inf  # the winner is not its own neighbour
    if plan.sub_rank:
        top = pruned_selection(dist, radius(sub, global_dims, centres, plan.sub_rank), plan)
    else:
        top = full_selection(dist, plan.k)
    rows, fixed = penalties(top, plan.redund_exp)
    return winners, rows, fixed
