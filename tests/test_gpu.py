"""The GPU paths on a real CUDA device: the torch backend (plain PyTorch ops
and compiled Triton kernels) reproduces the CPU engine, bit for bit where
the other tests say it does, and `embed` runs on CUDA.

Skipped without a GPU (CI has none: the other tests cover the same code on
CPU torch and Triton's interpreter). `benches/gpu_figures.sh` runs this file
on a lent GPU. `ZCORE_GPU_TEST_DEVICE=cpu TRITON_INTERPRET=1` runs it on CPU
torch, to check the tests themselves (smaller pools there).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zcore_fast  # noqa: E402
from zcore_fast import _native, backends  # noqa: E402
from zcore_fast.backends import blocks, columns, philox, search, triton_search  # noqa: E402
from zcore_fast.backends.torch_backend import Params, score_halves  # noqa: E402

DEV = os.environ.get("ZCORE_GPU_TEST_DEVICE", "cuda")
ON_GPU = DEV.startswith("cuda")

pytestmark = pytest.mark.skipif(
    ON_GPU and not torch.cuda.is_available(), reason="no CUDA GPU (set ZCORE_GPU_TEST_DEVICE=cpu)"
)
needs_triton = pytest.mark.skipif(
    not triton_search.available(), reason="Triton needs a CUDA GPU or TRITON_INTERPRET=1"
)

#: Rows of the scored pools: pruning is active at both sizes (checked below).
N = 20_000 if ON_GPU else 3_000
K = 100 if ON_GPU else 20
#: Samples per scoring test (fewer under the slow Triton interpreter).
S = 3000 if ON_GPU else 200


def tricky_pool(n: int, d: int, seed: int) -> np.ndarray:
    """Clustered rows with duplicates, ties, a constant dimension and one
    whose median is its minimum (as tests/test_backend_torch.py)."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) + 3.0 * rng.integers(0, 4, size=(n, 1))).astype(np.float32)
    x[n // 10 : n // 10 + n // 20] = x[3]
    x[:, 1] = np.round(x[:, 1])
    x[:, 2] = rng.integers(0, 3, size=n)
    x[:, 3] = 1.25
    x[: n // 2 + 1, 4] = x[:, 4].min()
    return x


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return tricky_pool(N, 16, seed=3)


def to_bytes(parts) -> np.ndarray:
    return np.concatenate([np.ascontiguousarray(p).view(np.uint8) for p in parts])


def test_the_device_is_a_gpu_when_one_is_asked_for() -> None:
    if ON_GPU:
        assert torch.cuda.is_available()
        assert triton_search.available(), "Triton is not installed next to CUDA torch"
        print(torch.cuda.get_device_name(0), torch.__version__)


@pytest.mark.parametrize("m", [1, 2, 5])
def test_draws_and_stats_on_the_device_equal_the_engines(pool: np.ndarray, m: int) -> None:
    stats = tuple(torch.from_numpy(a).to(DEV) for a in _native.dim_stats([pool]))
    for got, want in zip(columns.dim_stats(torch.from_numpy(pool.T.copy()).to(DEV)), stats):
        assert torch.equal(got, want)
    for seed in (0, 2**64 - 1):
        want_dims, want_q = _native.sample_draws(
            [pool], seed=seed, start=2**33, count=5000, sample_dim=m
        )
        dims, q = philox.sample_draws(stats, seed, 2**33, 5000, m)
        assert np.array_equal(dims.cpu().numpy(), want_dims)
        assert np.array_equal(q.cpu().numpy().view(np.uint32), want_q.view(np.uint32))
    noise = philox.noise(4, 0, N, torch.device(DEV)).cpu()
    assert torch.equal(noise, philox.noise(4, 0, N, torch.device("cpu")))  # engine-checked on CPU


def test_pruning_is_active_for_these_pools() -> None:
    sub_n = min(N, columns.SUBSAMPLE_ROWS)
    assert search.plan_search(N, sub_n, K, 4.0).sub_rank > 0


@pytest.mark.parametrize("kernels", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_scores_equal_the_engine_fed_float16(pool: np.ndarray, kernels: str, m: int) -> None:
    p = Params(S, m, K, 4.0, True, 7)
    got = score_halves([pool], p, device=DEV, storage="float16", kernels=kernels)
    want = _native.score(
        [pool.astype(np.float16)], n_sample=S, sample_dim=m, redund_nn=K,
        redund_exp=4.0, rand_init=True, seed=7, threads=2,
    )  # fmt: skip
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    for g, w in zip(got[1:], want[1:]):  # raw halves: a penalty's last bit at most
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


@needs_triton
@pytest.mark.parametrize("m", [2, 3])
def test_triton_equals_plain_torch_on_every_selection_path(pool: np.ndarray, m: int) -> None:
    """Both kernels on the device, and plain torch on the CPU: the same
    winners, rows and fixed-point penalties, bit for bit, including the
    samples redone because the radius held too few rows or overflowed."""
    cols = torch.from_numpy(np.ascontiguousarray(pool.T)).half()
    sub = cols[:, columns.subsample_rows(N)].float()
    base = search.plan_search(N, sub.shape[1], K, 4.0)
    dims, q = _native.sample_draws([pool], seed=1, start=0, count=64, sample_dim=m)
    d, q = torch.from_numpy(dims.astype(np.int64)), torch.from_numpy(q)
    dev = torch.device(DEV)
    few, overflow = dataclasses.replace(base, sub_rank=1), dataclasses.replace(base, capacity=K + 3)
    for plan in (base, few, overflow):
        on_cpu = search.sample_effects(cols, d, d, q, sub, plan)
        args = (cols.to(dev), d.to(dev), d.to(dev), q.to(dev), sub.to(dev), plan)
        plain = search.sample_effects(*args)
        fused = triton_search.sample_effects(*args)
        for a, b, c in zip(on_cpu, plain, fused):
            assert torch.equal(a, b.cpu()) and torch.equal(a, c.cpu()), plan


def test_same_bits_for_any_batch_size_streaming_split_and_device(pool: np.ndarray) -> None:
    """The raw fixed-point halves do not depend on batch size, on streaming
    blocks from (pinned) host memory, on splitting the samples between two
    scorers (threads on CUDA), or on the device: CPU torch gives the same."""
    x = pool[:, :8]
    p = Params(2000, 2, K, 4.0, True, 9)

    def halves(**kw) -> np.ndarray:
        return to_bytes(score_halves([x], p, storage="float16", **kw)[1:])

    base = halves(device=DEV)
    assert np.array_equal(halves(device=DEV, batch_size=7), base)
    budget = 2 * 2 * N * 2  # 2 dimensions per block, 2 slots: 4 blocks streamed
    assert not blocks.layout_for(8, N, 2, 2, budget).resident
    assert np.array_equal(halves(device=DEV, pool_memory=budget, batch_size=300), base)
    assert np.array_equal(halves(device=[DEV, DEV]), base)
    assert np.array_equal(halves(device="cpu", kernels="torch"), base)


@pytest.mark.skipif(not ON_GPU, reason="backend choice on a GPU")
def test_auto_and_cuda_backends_score_on_the_gpu(pool: np.ndarray) -> None:
    engine, device = backends.resolve("auto")
    assert engine == "torch" and device == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    kw = {"n_sample": 2000, "redund_nn": K, "seed": 2}
    gpu = zcore_fast.score(pool, backend="cuda", **kw)
    cpu = zcore_fast.score(pool.astype(np.float16), backend="cpu", **kw)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-5)


# ---- embed on the device -------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    pytest.importorskip("open_clip")
    from embed_helpers import tiny_clip_spec

    return tiny_clip_spec(tmp_path_factory.mktemp("cfg"))


@pytest.fixture()
def images(tmp_path):
    from embed_helpers import write_images

    folder = tmp_path / "images"
    paths = write_images(folder, 40, fmt="jpg", size=(60, 45))
    paths[9].write_bytes(b"not an image")
    return folder, paths


def test_embed_on_the_device_equals_a_direct_forward_pass(spec, images, tmp_path) -> None:
    import json

    import open_clip
    from PIL import Image
    from zcore_fast.embedding import embed

    folder, paths = images
    out = tmp_path / "e.npy"
    r = embed(
        folder, out, spec, weights="random", device=DEV, precision="fp32", dtype="float32",
        batch_size=8, workers=2,
    )  # fmt: skip
    assert r.rows == 39 and r.device.startswith(DEV.split(":")[0])
    manifest = json.loads((tmp_path / "e.manifest.json").read_text())
    assert manifest["config"]["device"] == torch.device(DEV).type
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model, _, pre = open_clip.create_model_and_transforms(
            spec.split(":")[1], pretrained=None, pretrained_text=False
        )
    model = model.eval().to(DEV)
    good = [p for i, p in enumerate(paths) if i != 9]
    with torch.inference_mode():
        x = torch.stack([pre(Image.open(p).convert("RGB")) for p in good]).to(DEV)
        direct = model.encode_image(x).float().cpu().numpy()
    np.testing.assert_allclose(np.load(out), direct, rtol=1e-3, atol=1e-3)
    # fp16 autocast (the GPU default): close to fp32, and the manifest says so.
    half = tmp_path / "h.npy"
    r16 = embed(folder, half, spec, weights="random", device=DEV, batch_size=8, workers=2)
    assert r16.precision == ("fp16" if ON_GPU else "fp32")
    err = np.linalg.norm(np.load(half).astype(np.float32) - direct) / np.linalg.norm(direct)
    assert err < 1e-2, err


def test_embed_resume_on_the_device_is_byte_identical(spec, images, tmp_path) -> None:
    from zcore_fast.embedding import embed

    class StopRunError(Exception):
        pass

    calls: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) > 2:
            raise StopRunError

    folder, _ = images
    whole, part = tmp_path / "whole.npy", tmp_path / "part.npy"
    kw = {"weights": "random", "device": DEV, "batch_size": 8}
    embed(folder, whole, spec, workers=0, **kw)
    with pytest.raises(StopRunError):
        embed(folder, part, spec, workers=2, progress=stop_after_two, **kw)
    embed(folder, part, spec, workers=2, resume=True, **kw)
    assert part.read_bytes() == whole.read_bytes()
