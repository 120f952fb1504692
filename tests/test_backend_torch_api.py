"""Choosing a backend, lazy torch import, errors, progress, CLI, and the
optional Triton kernels (run by Triton's CPU interpreter)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zcore_fast  # noqa: E402
from zcore_fast import backends  # noqa: E402
from zcore_fast.backends import placement  # noqa: E402
from zcore_fast.backends.torch_backend import Params, score_halves  # noqa: E402
from zcore_fast.cli import main  # noqa: E402

PYTHON_DIR = str(Path(zcore_fast.__file__).resolve().parents[1])
FAST = {"n_sample": 300, "redund_nn": 30}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": PYTHON_DIR, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return zcore_fast.example_embeddings(400, 8, seed=1)


def test_import_and_cpu_scoring_do_not_import_torch() -> None:
    out = run_python(
        """
        import sys
        import numpy as np
        import zcore_fast
        assert "torch" not in sys.modules, "import zcore_fast imported torch"
        zcore_fast.score(np.random.default_rng(0).normal(size=(50, 4)), n_sample=10)
        if not zcore_fast.backends._gpu_device_files():  # "auto" may not look for a GPU
            assert "torch" not in sys.modules, "scoring on the CPU engine imported torch"
        print("ok")
        """
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_resolve(monkeypatch) -> None:
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert backends.resolve("auto") == ("cpu", None)
    assert backends.resolve("cpu") == ("cpu", None)
    assert backends.resolve("torch") == ("torch", "cpu")
    assert backends.resolve("auto", device="cpu") == ("torch", "cpu")
    with pytest.raises(zcore_fast.ZCoreError, match="sees no CUDA GPU"):
        backends.resolve("cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.resolve("gpu")
    with pytest.raises(ValueError, match="device= is for backend='torch'"):
        backends.resolve("cpu", device="cpu")
    monkeypatch.setattr(backends, "_torch_installed", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'zcore-fast\[cuda\]'"):
        backends.resolve("torch")


def test_hidden_gpus_are_not_probed(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not backends._gpu_device_files()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error(x: np.ndarray) -> None:
    with pytest.raises(zcore_fast.ZCoreError, match="PyTorch sees no CUDA GPU"):
        zcore_fast.score(x, backend="cuda", **FAST)
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU"):
        zcore_fast.score(x, backend="torch", device="cuda", **FAST)


P = Params(200, 2, 20, 4.0, True, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"device": "tpu:9"}, ValueError, "not a torch device"),
        ({"device": []}, ValueError, "device list is empty"),
        ({"storage": "int8"}, ValueError, "storage must be"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        ({"kernels": "cutlass"}, ValueError, "kernels must be"),
    ],
)
def test_bad_options(x: np.ndarray, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        score_halves([x], P, **kwargs)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter on")
def test_triton_needs_a_gpu(x: np.ndarray) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="kernels='triton'"):
        score_halves([x], P, kernels="triton")


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (lambda x: x[:, :1], {"sample_dim": 2}, "fewer than sample_dim"),
        (lambda x: x[:1], {}, "at least 2 rows"),
        (lambda x: x, {"redund_exp": -1.0}, "redund_exp must be"),
        (lambda x: [x, x[:-1]], {}, "row counts differ"),
        (lambda x: np.where(np.arange(400)[:, None] % 100 == 7, np.nan, x), {}, "4 row"),
    ],
)
def test_bad_input_messages_match_the_cpu_engine(x, make, kwargs, match) -> None:
    for backend in ("cpu", "torch"):
        with pytest.raises(ValueError, match=match):
            zcore_fast.score(make(x), backend=backend, **{**FAST, **kwargs})


def test_nan_rows_are_named(x: np.ndarray) -> None:
    bad = x.copy()
    bad[[5, 77], 3] = np.inf
    with pytest.raises(ValueError, match=r"2 row\(s\): 5, 77; remove or repair"):
        zcore_fast.score(bad, backend="torch", **FAST)


def test_float16_overflow(monkeypatch, x: np.ndarray) -> None:
    big = x * 1e5  # beyond float16's range
    with pytest.raises(ValueError, match="beyond float16's range"):
        score_halves([big], P, storage="float16")
    # The default storage falls back to float32 rather than store Inf.
    monkeypatch.setattr(placement, "default_storage", lambda device: torch.float16)
    got, _, _ = score_halves([big], P)
    want = zcore_fast.score(big, backend="cpu", n_sample=200, redund_nn=20)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_progress_reports_and_stops(x: np.ndarray) -> None:
    calls: list[tuple[int, int]] = []
    zcore_fast.score(x, backend="torch", progress=lambda d, t: calls.append((d, t)), **FAST)
    assert calls[-1] == (300, 300)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))

    def stop(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        score_halves([x], P, batch_size=1, progress=stop)


def test_cli_backend_flag(tmp_path, capsys) -> None:
    outs = {}
    for backend in ("cpu", "torch"):
        out = tmp_path / f"{backend}.npy"
        argv = ["score", "--example", "-o", str(out), "--backend", backend, "--json"]
        assert main([*argv, "--n-sample", "200", "--redund-nn", "50"]) == 0
        assert f'"backend": "{backend}"' in capsys.readouterr().out
        outs[backend] = np.load(out)
    np.testing.assert_allclose(outs["torch"], outs["cpu"], atol=1e-5)
    assert main(["score", "--example", "-o", str(tmp_path / "x.npy"), "--backend", "tpu"]) == 2
    if not torch.cuda.is_available():
        argv = ["score", "--example", "-o", str(tmp_path / "c.npy"), "--backend", "cuda"]
        assert main(argv) == 1
        assert "sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_triton_kernels_equal_plain_torch_under_the_interpreter() -> None:
    out = run_python(
        """
        import dataclasses
        import numpy as np, torch
        from zcore_fast import _native
        from zcore_fast.backends import columns, search, triton_search
        from zcore_fast.backends.torch_backend import Params, score_halves

        rng = np.random.default_rng(0)
        x = rng.normal(size=(3000, 6)).astype(np.float32)
        x[100:160] = x[7]
        x[:, 1] = np.round(x[:, 1])
        cols = torch.from_numpy(np.ascontiguousarray(x.T))
        sub = cols[:, columns.subsample_rows(3000)].float()
        base = search.plan_search(3000, sub.shape[1], 20, 4.0)
        assert base.sub_rank, base
        for m in (2, 3):
            dims, q = _native.sample_draws([x], seed=1, start=0, count=10, sample_dim=m)
            d, q = torch.from_numpy(dims.astype(np.int64)), torch.from_numpy(q)
            for plan in (base, dataclasses.replace(base, capacity=20),
                         dataclasses.replace(base, sub_rank=1)):
                a = search.sample_effects(cols, d, d, q, sub, plan)
                b = triton_search.sample_effects(cols, d, d, q, sub, plan)
                assert all(torch.equal(u, v) for u, v in zip(a, b)), (m, plan)
        p = Params(16, 2, 20, 4.0, True, 3)
        got = score_halves([x], p, kernels="triton")
        want = _native.score([x], n_sample=16, sample_dim=2, redund_nn=20, redund_exp=4.0,
                             rand_init=True, seed=3, threads=1)
        assert all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, want))
        print("ok")
        """,
        TRITON_INTERPRET="1",
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter on")
def test_triton_kernels_compile_for_a_gpu() -> None:
    """Both kernels compile for sm_90 (H100/H200) without a GPU. The
    interpreter accepts code the compiler refuses: a plain int global passed
    every CPU test and failed to compile on an H200."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from zcore_fast.backends import triton_kernels as tk

    common = {"cols": "*fp16", "dims": "*i64", "n": "i32", "m": "constexpr"}
    common |= {"block": "constexpr", "iters": "constexpr"}
    kernels = {
        tk.nearest_kernel: {"q": "*fp32", "out": "*i64", "n_parts": "i32"},
        tk.collect_kernel: {
            "centres": "*fp32",
            "winners": "*i64",
            "limits": "*fp32",
            "counts": "*i32",
            "out": "*i64",
            "capacity": "i32",
        },
    }
    for kernel, own in kernels.items():
        names = kernel.arg_names
        signature = {name: {**common, **own}[name] for name in names}
        for m in (1, 3):
            src = ASTSource(kernel, signature, constexprs={"m": m, "block": 1024, "iters": 8})
            compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
            assert compiled.asm["cubin"], (kernel, m)
