"""backend="ray" on a real two-node Ray cluster started by the fixture on
127.0.0.1: scores bit-identical to one local process (the oracle) for any
worker count, dtype, input kind, a killed worker and tiny pools; errors as
in one process; cancellation that stops the remote work."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

# Sets Ray's environment before Ray is imported (and skips without Ray).
import ray_helpers
import zcore_fast
from ray_helpers import actor_pids, pool
from zcore_fast.cli import main

ray = pytest.importorskip("ray")
cluster = pytest.fixture(scope="module")(ray_helpers.cluster)

FAST = {"n_sample": 3_000, "redund_nn": 25}


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bit_identical_for_one_two_and_three_workers(cluster, tmp_path: Path, dtype) -> None:
    x = pool(1, dtype=dtype)
    path = tmp_path / "x.npy"
    np.save(path, x)
    want = zcore_fast.score_report(x, backend="cpu", seed=5, **FAST)
    for workers in (1, 2, 3):
        for source in (x, path):
            got = zcore_fast.score_report(
                source, backend="ray", workers=workers, seed=5, ray_address=cluster.address,
                **FAST,
            )  # fmt: skip
            np.testing.assert_array_equal(got.scores, want.scores)
            assert got.convergence == want.convergence
            assert got.parameters["workers"] == workers


def test_band_search_pools_split_by_band_dimension(cluster) -> None:
    """A pool large enough for band search: the workers split the samples
    by band dimension (each builds its own dimensions' band indexes)."""
    x = pool(21, n=100_000, d=5)
    params = {"n_sample": 2_000, "redund_nn": 50, "seed": 4}
    want = zcore_fast.score(x, **params)
    for workers in (2, 3, 7):
        got = zcore_fast.score(x, backend="ray", workers=workers, **params)
        np.testing.assert_array_equal(got, want)


def test_shard_folder_and_column_cache(cluster, tmp_path: Path) -> None:
    x = pool(2, n=1_200)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, piece in enumerate(np.array_split(x, 3)):
        np.save(folder / f"emb_{i:02d}.npy", piece)
    want = zcore_fast.score(x, **FAST)
    got = zcore_fast.score(folder, backend="ray", workers=2, **FAST)
    np.testing.assert_array_equal(got, want)
    # Through the column cache: the workers map the cache file.
    cached = zcore_fast.score_report(
        folder, backend="ray", workers=2, cache="always", cache_dir=tmp_path / "c", **FAST
    )
    assert cached.cache_path is not None
    np.testing.assert_array_equal(cached.scores, want)


def test_select_with_zcore_and_ccs(cluster) -> None:
    x = pool(3, n=800)
    for method in ("zcore", "ccs"):
        want = zcore_fast.select_with(method, x, 40, seed=2, **FAST)
        got = zcore_fast.select_with(method, x, 40, seed=2, backend="ray", workers=2, **FAST)
        np.testing.assert_array_equal(got, want)


def test_tiny_pools_and_more_workers_than_samples(cluster) -> None:
    x = pool(4, n=2, d=3)
    for n_sample in (1, 2, 5):
        want = zcore_fast.score(x, n_sample=n_sample, redund_nn=1)
        got = zcore_fast.score(x, n_sample=n_sample, redund_nn=1, backend="ray", workers=3)
        np.testing.assert_array_equal(got, want)


def test_errors_as_in_one_process(cluster, tmp_path: Path) -> None:
    x = pool(5, n=300)
    x[17, 2] = np.nan
    with pytest.raises(ValueError) as local:
        zcore_fast.score(x, **FAST)
    with pytest.raises(ValueError) as remote:
        zcore_fast.score(x, backend="ray", workers=2, **FAST)
    assert str(remote.value) == str(local.value)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        zcore_fast.score(x, backend="ray", workers=0)
    with pytest.raises(ValueError, match="are for backend='ray'"):
        zcore_fast.score(x, workers=2)
    from zcore_fast.backends import ray_backend

    missing = str(tmp_path / "only_on_the_driver.npy")
    with pytest.raises(FileNotFoundError, match=r"Ray node .* cannot read .*only_on_the_driver"):
        ray_backend.score_halves(
            [missing], n_sample=10, sample_dim=2, redund_nn=5, redund_exp=4.0, seed=0,
            isa=None, options=ray_backend.RayOptions(workers=1),
        )  # fmt: skip


def _worker_pids() -> list[int]:
    return actor_pids("_Worker")


def test_killed_worker_is_replaced_and_scores_unchanged(cluster) -> None:
    x = pool(6, n=20_000, d=16)
    params: dict = {"redund_nn": 200, "seed": 1}
    # Long enough for a kill mid-run on any machine: about 4 s of local
    # scoring, measured on a short run first.
    start = time.perf_counter()
    zcore_fast.score(x, n_sample=5_000, **params)
    per_sample = (time.perf_counter() - start) / 5_000
    params["n_sample"] = int(min(2_000_000, max(40_000, 4.0 / per_sample)))
    want = zcore_fast.score(x, **params)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not killed and 0 < done < total // 2:
            pids = _worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    got = zcore_fast.score(x, backend="ray", workers=2, progress=progress, **params)
    assert killed, "the run ended before a worker could be killed"
    np.testing.assert_array_equal(got, want)


def test_a_raising_progress_callback_cancels_the_remote_work(cluster) -> None:
    x = pool(7, n=20_000, d=16)
    seen: list[tuple[int, int]] = []

    class StopError(Exception):
        pass

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done > 0:
            raise StopError

    start = time.monotonic()
    with pytest.raises(StopError):
        zcore_fast.score(x, backend="ray", workers=2, n_sample=10**6, progress=progress)
    assert time.monotonic() - start < 60
    deadline = time.monotonic() + 20
    while _worker_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _worker_pids(), "workers still running after the run was cancelled"
    assert all(total == 10**6 for _, total in seen)


def test_cli_backend_ray(cluster, tmp_path: Path) -> None:
    x = pool(8, n=900)
    np.save(tmp_path / "x.npy", x)
    flags = ["--n-sample", "3000", "--redund-nn", "25", "--budget", "50", "-q"]
    assert main(["select", str(tmp_path / "x.npy"), "-o", str(tmp_path / "a.npy"), *flags]) == 0
    ray_flags = ["--backend", "ray", "--ray-address", cluster.address, "--workers", "2"]
    out = str(tmp_path / "b.npy")
    assert main(["select", str(tmp_path / "x.npy"), "-o", out, *flags, *ray_flags]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert main(["select", str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.npy"), *flags,
                 "--workers", "2"]) == 2  # fmt: skip
    assert main(["select", str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.npy"), *flags,
                 "--ray-device", "cpu"]) == 2  # fmt: skip


def test_torch_workers_give_the_torch_backends_scores(cluster, tmp_path: Path) -> None:
    """GPU workers, run here on the CPU as CI runs the torch backend: each
    worker scores its range with PyTorch, and the sums give exactly what
    backend='torch' gives in one process."""
    pytest.importorskip("torch")
    x = pool(8, n=900, d=8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    params = {"n_sample": 2_000, "redund_nn": 25, "seed": 3}
    want = zcore_fast.score_report(x, backend="torch", device="cpu", **params)
    # One run each way (each worker imports torch, seconds apiece): three
    # uneven ranges, from the file every node reads.
    got = zcore_fast.score_report(
        path, backend="ray", device="cpu", workers=3, ray_address=cluster.address, **params
    )
    np.testing.assert_array_equal(got.scores, want.scores)
    assert got.convergence == want.convergence
    assert got.parameters["device"] == "cpu"
    out = tmp_path / "s.npy"
    flags = ["--n-sample", "2000", "--redund-nn", "25", "--seed", "3", "-q"]
    assert main(["score", str(path), "-o", str(out), *flags, "--backend", "ray",
                 "--ray-address", cluster.address, "--workers", "2",
                 "--ray-device", "cpu"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(out), want.scores)


def test_device_for_ray_workers_is_checked(cluster) -> None:
    x = pool(9, n=50, d=4)
    with pytest.raises(ValueError, match="device='cuda'"):
        zcore_fast.score(x, backend="ray", device="tpu")
    pytest.importorskip("torch")
    # The test cluster has no GPU: an error at once, not actors waiting
    # forever for one.
    with pytest.raises(RuntimeError, match="needs GPUs, and the Ray cluster"):
        zcore_fast.score(x, backend="ray", device="cuda", ray_address=cluster.address)
