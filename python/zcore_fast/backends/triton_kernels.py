"""The Triton kernels of triton_search.py (imported only when they run).

Keys are (distance bits << 32) | row: non-negative float32 distances order
like their bits, so one int64 minimum or top-k orders by (distance, row).
"""

import triton
import triton.language as tl

#: A tl.constexpr: compiled kernels may read no other kind of global (the
#: interpreter does not check this; Triton 3.6 on a GPU refused a plain int).
_NO_KEY = tl.constexpr(0x7FFF_FFFF_FFFF_FFFF)


@triton.jit
def _distance(cols, dims, points, s, rows, mask, n, m: tl.constexpr):
    """L1 distance of `rows` to sample s's point over its m dims: float32,
    summed in dims order, values converted to float32 first (the CPU
    engine's arithmetic; no multiply, so no fused multiply-add)."""
    dist = tl.zeros(rows.shape, dtype=tl.float32)
    for j in tl.static_range(m):
        d = tl.load(dims + s * m + j)
        p = tl.load(points + s * m + j)
        x = tl.load(cols + d * n + rows, mask=mask, other=0.0).to(tl.float32)
        dist += tl.abs(x - p)
    return dist


@triton.jit
def _key(dist, rows):
    return (dist.to(tl.int32, bitcast=True).to(tl.int64) << 32) | rows.to(tl.int64)


@triton.jit
def nearest_kernel(
    cols, dims, q, out, n, n_parts, m: tl.constexpr, block: tl.constexpr, iters: tl.constexpr
):
    """out[s, part]: the smallest key of sample s over its part of the rows."""
    s = tl.program_id(0)
    part = tl.program_id(1)
    best = tl.full([block], _NO_KEY, dtype=tl.int64)
    for it in range(iters):
        rows = (part * iters + it) * block + tl.arange(0, block)
        mask = rows < n
        dist = _distance(cols, dims, q, s, rows, mask, n, m)
        best = tl.minimum(best, tl.where(mask, _key(dist, rows), _NO_KEY))
    tl.store(out + s * n_parts + part, tl.min(best, axis=0))


@triton.jit
def collect_kernel(
    cols,
    dims,
    centres,
    winners,
    limits,
    counts,
    out,
    n,
    capacity,
    m: tl.constexpr,
    block: tl.constexpr,
    iters: tl.constexpr,
):
    """Appends to out[s, :] the keys of rows within limits[s] of sample s's
    centre (its winner excluded); counts[s] ends as the number of such rows,
    which may exceed `capacity` (the keys past it are dropped)."""
    s = tl.program_id(0)
    part = tl.program_id(1)
    limit = tl.load(limits + s)
    winner = tl.load(winners + s)
    for it in range(iters):
        rows = (part * iters + it) * block + tl.arange(0, block)
        mask = rows < n
        dist = _distance(cols, dims, centres, s, rows, mask, n, m)
        take = mask & (dist <= limit) & (rows.to(tl.int64) != winner)
        taken = tl.sum(take.to(tl.int32), axis=0)
        if taken > 0:  # most blocks hold no candidate: skip the atomic
            base = tl.atomic_add(counts + s, taken)
            pos = base + tl.cumsum(take.to(tl.int32), axis=0) - 1
            slots = out + s.to(tl.int64) * capacity  # S x capacity may pass 2^31
            tl.store(slots + pos, _key(dist, rows), mask=take & (pos < capacity))
