"""The CPU engine's counter-based random streams, replayed with PyTorch.

A bit-exact port of rust/rng.rs and `zcore::draw_into` (rust/zcore.rs): the
same seed gives the same subspaces, sample points and `rand_init` noise on
any device, so coverage winners agree with the CPU engine exactly. The tests
compare every output with `_native.sample_draws`.

Philox4x32-10 needs 32 x 32 -> 64-bit products. PyTorch has no unsigned
64-bit arithmetic on every device, so words are held in int64 tensors and
each product is split into 16-bit halves that never overflow. Every
floating-point step is a separate eager op in float64 (no fused
multiply-add can form across ops), so the rounding matches the CPU engine's.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFF_FFFF
_M0, _M1 = 0xD251_1F53, 0xCD9E_8D57
_W0, _W1 = 0x9E37_79B9, 0xBB67_AE85

#: Stream ids, as in rust/rng.rs.
STREAM_SAMPLE = 0
STREAM_NOISE = 1

_TWO_POW_M32 = 1.0 / 4_294_967_296.0


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of `a * m` for 32-bit `a` and constant `m`."""
    lo_part = a * (m & 0xFFFF)  # < 2^48
    hi_part = a * (m >> 16)  # < 2^48
    low = (((hi_part & 0xFFFF) << 16) + lo_part) & _MASK32
    high = (hi_part + (lo_part >> 16)) >> 16
    return high, low


def philox4x32(
    counter: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], seed: int
) -> list[torch.Tensor]:
    """Philox4x32-10 of a batch of 128-bit counters (four int64 tensors of
    32-bit words) under the key of `seed`; returns four int64 word tensors."""
    c = list(counter)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for round_ in range(10):
        if round_ > 0:
            k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
        hi0, lo0 = _mulhilo(c[0], _M0)
        hi1, lo1 = _mulhilo(c[2], _M1)
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def stream_words(seed: int, stream: int, index: torch.Tensor, n_words: int) -> torch.Tensor:
    """The first `n_words` u32 of `Stream::new(seed, stream, index)` for each
    index (int64 tensor), as an int64 tensor of shape (len(index), n_words)."""
    lo, hi = index & _MASK32, index >> 32
    stream_t = torch.full_like(index, stream)
    blocks = []
    for block in range((n_words + 3) // 4):
        words = philox4x32((lo, hi, torch.full_like(index, block), stream_t), seed)
        blocks.append(torch.stack(words, dim=1))
    return torch.cat(blocks, dim=1)[:, :n_words]


def unit_open(words: torch.Tensor) -> torch.Tensor:
    """`Stream::unit_open`: u32 words to float64 in the open interval (0, 1)."""
    return (words.to(torch.float64) + 0.5) * _TWO_POW_M32


def triangular(
    u: torch.Tensor, lo: torch.Tensor, mode: torch.Tensor, hi: torch.Tensor
) -> torch.Tensor:
    """Inverse CDF of Triangular(lo, mode, hi) at `u`, float64, evaluated in
    the CPU engine's order of operations (`rng::triangular`)."""
    width = hi - lo
    split = (mode - lo) / width
    left = lo + torch.sqrt((u * width) * (mode - lo))
    right = hi - torch.sqrt(((1.0 - u) * width) * (hi - mode))
    x = torch.where(u < split, left, right)
    x = torch.minimum(torch.maximum(x, lo), hi)
    # A constant dimension (width 0) draws that constant; its NaN split and
    # square roots above are discarded here.
    return torch.where(width <= 0, lo, x)


def sample_draws(
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    seed: int,
    start: int,
    count: int,
    sample_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Subspaces and sample points of samples `start .. start + count`.

    `stats` is (lo, median, hi) per dimension, float64, on the device to draw
    on. Returns (dims int64 (count, sample_dim), q float32 (count,
    sample_dim)), equal to `_native.sample_draws` for the same pool and seed.
    """
    lo, md, hi = stats
    n_dims = lo.shape[0]
    m = sample_dim
    index = torch.arange(start, start + count, dtype=torch.int64, device=lo.device)
    words = stream_words(seed, STREAM_SAMPLE, index, 2 * m)
    # Floyd's algorithm (`rng::distinct_dims`): one word per chosen dimension.
    dims = torch.empty((count, m), dtype=torch.int64, device=lo.device)
    for filled, j in enumerate(range(n_dims - m, n_dims)):
        t = (words[:, filled] * (j + 1)) >> 32  # multiply-shift; j + 1 < 2^31
        taken = (dims[:, :filled] == t[:, None]).any(dim=1)
        dims[:, filled] = torch.where(taken, torch.full_like(t, j), t)
    u = unit_open(words[:, m : 2 * m])
    q = triangular(u, lo[dims], md[dims], hi[dims]).to(torch.float32)
    return dims, q


def noise(seed: int, start: int, count: int, device: torch.device) -> torch.Tensor:
    """`rand_init` noise of rows `start .. start + count`: float64 in (0, 1)."""
    index = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return unit_open(stream_words(seed, STREAM_NOISE, index, 1)[:, 0])
