"""The torch backend reproduces the CPU engine: same draws, same winners,
same penalties, same scores; for any batch size, block size or device split.

Runs on CPU torch (backend="torch"), so it never needs a GPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zcore_fast  # noqa: E402
from zcore_fast import _native  # noqa: E402
from zcore_fast.backends import blocks, columns, philox, search  # noqa: E402
from zcore_fast.backends.torch_backend import Params, score_halves  # noqa: E402

FIXED_ONE = float(search.FIXED_ONE)


def tricky_pool(n: int, d: int, seed: int) -> np.ndarray:
    """Clustered rows with exact duplicates, heavy ties (a rounded and a
    coarsely quantised dimension), a constant dimension and one whose
    median equals its minimum."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) + 3.0 * rng.integers(0, 4, size=(n, 1))).astype(np.float32)
    x[n // 10 : n // 10 + n // 20] = x[3]  # a block of duplicates
    x[:, 1] = np.round(x[:, 1])
    x[:, 2] = rng.integers(0, 3, size=n)
    x[:, 3] = 1.25
    x[: n // 2 + 1, 4] = x[:, 4].min()
    return x


def draws(x: np.ndarray, m: int, count: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    return _native.sample_draws([x], seed=seed, start=5, count=count, sample_dim=m)


def effects(
    x: np.ndarray, dims: np.ndarray, q: np.ndarray, redund_nn: int, exp: float, **plan_changes
):
    """search.sample_effects on a pool stored as x's dtype (float16 or float32)."""
    dtype = torch.float16 if x.dtype == np.float16 else torch.float32
    cols = torch.from_numpy(np.ascontiguousarray(x.T.astype(np.float32))).to(dtype)
    sub = cols[:, columns.subsample_rows(x.shape[0])].float()
    plan = search.plan_search(x.shape[0], sub.shape[1], redund_nn, exp)
    plan = dataclasses.replace(plan, **plan_changes)
    d = torch.from_numpy(dims.astype(np.int64))
    return search.sample_effects(cols, d, d, torch.from_numpy(q), sub, plan), plan


def assert_matches_trace(x, dims, q, redund_nn, exp, **plan_changes) -> None:
    (winners, rows, fixed), _ = effects(x, dims, q, redund_nn, exp, **plan_changes)
    for i in range(dims.shape[0]):
        win, t_rows, t_w = _native.trace(
            [x], dims[i].tolist(), q[i].tolist(), redund_nn=redund_nn, redund_exp=exp
        )
        assert int(winners[i]) == win, f"sample {i}: winner"
        r, f = rows[i].numpy(), fixed[i].numpy()
        if t_rows.size == 1 and t_w[0] == 1.0 and r.size > 1:  # a duplicate takes it all
            assert r[0] == t_rows[0] and f[0] == search.FIXED_ONE and not f[1:].any()
            continue
        assert sorted(r.tolist()) == sorted(t_rows.tolist()), f"sample {i}: neighbours"
        want = dict(zip(t_rows.tolist(), t_w.tolist()))
        got = np.array([want[row] for row in r.tolist()])
        # Only the float64 sum order differs: within one fixed-point unit.
        assert np.abs(f - np.floor(got * FIXED_ONE + 0.5)).max() <= 1, f"sample {i}: weights"


@pytest.mark.parametrize("m", [1, 2, 3])
def test_draws_equal_the_engines(m: int) -> None:
    x = tricky_pool(301, 9, seed=1)
    stats = tuple(torch.from_numpy(a) for a in _native.dim_stats([x]))
    for seed in (0, 7, 2**64 - 1):
        want_dims, want_q = _native.sample_draws(
            [x], seed=seed, start=2**33, count=3000, sample_dim=m
        )
        dims, q = philox.sample_draws(stats, seed, 2**33, 3000, m)
        assert np.array_equal(dims.numpy(), want_dims)
        assert q.numpy().tobytes() == want_q.tobytes()  # bit for bit


def test_stats_equal_the_engines() -> None:
    for n in (300, 301):
        x = tricky_pool(n, 9, seed=2)
        got = columns.dim_stats(torch.from_numpy(np.ascontiguousarray(x.T)))
        for g, want in zip(got, _native.dim_stats([x])):
            assert g.numpy().tobytes() == want.tobytes()


@pytest.mark.parametrize("m", [1, 2, 3])
def test_sample_effects_equal_the_engines_trace(m: int) -> None:
    x = tricky_pool(400, 9, seed=3)
    dims, q = draws(x, m, 150)
    assert_matches_trace(x, dims, q, 50, 4.0)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub_rank": 0},  # no pruning: a full top-k
        {"capacity": 50},  # candidates overflow: every sample redone in full
        {"sub_rank": 1},  # radius too small: every sample redone in full
    ],
    ids=["full", "overflow", "too-few"],
)
def test_every_selection_path_is_exact(changes: dict) -> None:
    x = tricky_pool(400, 9, seed=4)
    dims, q = draws(x, 2, 80)
    assert_matches_trace(x, dims, q, 50, 4.0, **changes)


def test_pruning_is_active_for_the_default_plan() -> None:
    x = tricky_pool(400, 9, seed=4)
    _, plan = effects(x, *draws(x, 2, 2), 50, 4.0)
    assert plan.sub_rank and plan.capacity < 400


@pytest.mark.parametrize(("n", "redund_nn"), [(2, 1000), (30, 1000), (60, 59)])
def test_tiny_pools_and_k_at_least_n(n: int, redund_nn: int) -> None:
    x = tricky_pool(max(n, 20), 6, seed=5)[:n]
    dims, q = draws(x, 2, 60)
    assert_matches_trace(x, dims, q, redund_nn, 4.0)


@pytest.mark.parametrize("exp", [0.0, 1.0, 2.5, 4.0])
def test_exponents(exp: float) -> None:
    x = tricky_pool(200, 6, seed=6)
    dims, q = draws(x, 2, 40)
    assert_matches_trace(x, dims, q, 20, exp)


def test_float16_pool_matches_the_engine_fed_float16() -> None:
    x = tricky_pool(400, 9, seed=7).astype(np.float16)
    dims, q = draws(x, 2, 100)
    assert_matches_trace(x, dims, q, 50, 4.0)


FAST = {"n_sample": 1200, "redund_nn": 40}


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return tricky_pool(500, 12, seed=8)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_scores_equal_the_cpu_engine(pool: np.ndarray, m: int) -> None:
    cpu = zcore_fast.score_report(pool, sample_dim=m, seed=3, backend="cpu", **FAST)
    tch = zcore_fast.score_report(pool, sample_dim=m, seed=3, backend="torch", **FAST)
    np.testing.assert_allclose(tch.scores, cpu.scores, rtol=0, atol=1e-5)
    assert tch.scores.dtype == np.float32 and tch.scores.min() == 0 and tch.scores.max() == 1
    assert abs(tch.convergence - cpu.convergence) < 1e-6


def test_without_noise_and_with_float64_fortran_and_files(pool: np.ndarray, tmp_path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.asfortranarray(pool[:, :5]))
    inputs = [str(path), pool[:, 5:].astype(np.float64)]
    kw = {"rand_init": False, "seed": 1, **FAST}
    cpu = zcore_fast.score(inputs, backend="cpu", **kw)
    np.testing.assert_allclose(zcore_fast.score(inputs, backend="torch", **kw), cpu, atol=1e-5)


def test_float16_storage_scores_the_float16_rounded_pool(pool: np.ndarray) -> None:
    p = Params(1200, 2, 40, 4.0, True, 5)
    got, _, _ = score_halves([pool], p, storage="float16")
    want = zcore_fast.score(pool.astype(np.float16), seed=5, backend="cpu", **FAST)
    np.testing.assert_allclose(got, want, atol=1e-5)


def halves(x: np.ndarray, **kw) -> np.ndarray:
    p = Params(900, 2, 40, 4.0, True, 9)
    return np.concatenate([h.view(np.uint8) for h in score_halves([x], p, **kw)])


def test_same_bits_for_any_batch_size_block_size_and_device_split(pool: np.ndarray) -> None:
    base = halves(pool, batch_size=4096)
    assert np.array_equal(halves(pool, batch_size=1), base)
    assert np.array_equal(halves(pool, batch_size=7), base)
    # 3 dimensions per block: 4 blocks streamed through 2 slots.
    assert not blocks.layout_for(12, 500, 4, 2, 12_000).resident
    assert np.array_equal(halves(pool, batch_size=13, pool_memory=12_000), base)
    assert np.array_equal(halves(pool, device=["cpu", "cpu", "cpu"]), base)


def test_streamed_groups_see_the_right_columns() -> None:
    host = torch.arange(10 * 7, dtype=torch.float32).view(10, 7)
    layout = blocks.layout_for(10, 7, 4, 3, budget=3 * 2 * 7 * 4)  # 2 dims per block
    assert (layout.block_dims, layout.n_blocks, layout.slots) == (2, 5, 3)
    streamed = blocks.Streamed(host, layout, torch.device("cpu"))
    dims = torch.from_numpy(
        _native.sample_draws(
            [np.ones((7, 10), np.float32)], seed=1, start=0, count=500, sample_dim=3
        )[0]
    ).long()
    seen = torch.zeros(500, dtype=torch.int64)
    groups = 0
    for local, idx in streamed.groups(dims):
        assert torch.equal(streamed.columns[local], host[dims[idx]])
        seen[idx] += 1
        groups += 1
    assert torch.equal(seen, torch.ones(500, dtype=torch.int64))
    # Groups in lexicographic order keep blocks resident: fewer copies than groups.
    assert streamed.loads < groups


def test_layout_refuses_a_budget_below_one_column_per_slot() -> None:
    with pytest.raises(ValueError, match="cannot hold 2 columns"):
        blocks.layout_for(10, 1000, 4, 2, budget=4000)
