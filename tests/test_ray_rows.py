"""backend="ray" with sharding="rows" on a real two-node Ray cluster on
127.0.0.1: every worker holds a range of the rows, and the scores must be
those of one local process (the oracle) bit for bit, for 1-3 workers,
float16 and float32, arrays, files, shard folders and inputs side by side,
tiny pools, a killed worker; errors as in one process; cancellation."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import ray_helpers
import zcore_fast
from ray_helpers import actor_pids, pool
from zcore_fast.cli import main

ray = pytest.importorskip("ray")
cluster = pytest.fixture(scope="module")(ray_helpers.cluster)

FAST = {"n_sample": 3_000, "redund_nn": 25}
ROWS = {"backend": "ray", "sharding": "rows"}


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bit_identical_for_one_two_and_three_workers(cluster, tmp_path: Path, dtype) -> None:
    x = pool(11, dtype=dtype)
    path = tmp_path / "x.npy"
    np.save(path, x)
    want = zcore_fast.score_report(x, backend="cpu", seed=5, **FAST)
    for workers in (1, 2, 3):
        for source in (x, path):
            got = zcore_fast.score_report(
                source, workers=workers, seed=5, ray_address=cluster.address, **ROWS, **FAST
            )
            np.testing.assert_array_equal(got.scores, want.scores)
            assert got.convergence == want.convergence
            assert got.parameters["sharding"] == "rows"


def test_shard_folders_side_by_side(cluster, tmp_path: Path) -> None:
    """Row shards of two models beside each other, cut at other rows than
    the workers' ranges, so a worker's rows span files."""
    x = pool(12, n=1_300, d=6)
    y = pool(13, n=1_300, d=4, dtype=np.float16)
    for name, arr, cuts in (("a", x, [400, 401, 900]), ("b", y, [650])):
        (tmp_path / name).mkdir()
        for i, piece in enumerate(np.split(arr, cuts)):
            np.save(tmp_path / name / f"emb_{i:02d}.npy", piece)
    want = zcore_fast.score([x, y.astype(np.float32)], **FAST)
    for workers in (2, 3):
        got = zcore_fast.score([tmp_path / "a", tmp_path / "b"], workers=workers, **ROWS, **FAST)
        np.testing.assert_array_equal(got, want)
    pattern = str(tmp_path / "a" / "emb_*.npy")
    got = zcore_fast.score([pattern, y], workers=2, **ROWS, **FAST)
    np.testing.assert_array_equal(got, zcore_fast.score([x, y], **FAST))


def test_other_parameters_and_select_with(cluster) -> None:
    x = pool(14, n=700, d=5)
    for params in ({"sample_dim": 3, "redund_nn": 1000}, {"sample_dim": 1, "redund_exp": 2.0}):
        want = zcore_fast.score(x, n_sample=1_500, seed=3, **params)
        got = zcore_fast.score(x, n_sample=1_500, seed=3, workers=2, **ROWS, **params)
        np.testing.assert_array_equal(got, want)
    for method in ("zcore", "ccs"):
        want = zcore_fast.select_with(method, x, 40, seed=2, **FAST)
        got = zcore_fast.select_with(method, x, 40, seed=2, workers=2, **ROWS, **FAST)
        np.testing.assert_array_equal(got, want)


def test_rows_sorted_across_workers(cluster) -> None:
    """Rows sorted by cluster, so a sample's neighbours sit in one worker:
    its first share of them is too small, the samples are asked again for
    all k (then every batch sends all k), and the scores do not change."""
    x = pool(23, n=1_200, d=6)
    x = x[np.argsort(x[:, 0], kind="stable")]
    params = {"n_sample": 2_000, "redund_nn": 100, "seed": 6}
    want = zcore_fast.score(x, **params)
    for workers in (2, 3):
        got = zcore_fast.score(x, workers=workers, **ROWS, **params)
        np.testing.assert_array_equal(got, want)


def test_neighbour_lists_kept_within_the_byte_budget(cluster, monkeypatch) -> None:
    """A budget of a few samples' lists: batches are merged in pieces and
    the samples asked again in chunks; the scores do not change."""
    from zcore_fast.backends import ray_rows

    x = pool(24, n=1_200, d=6)
    x = x[np.argsort(x[:, 0], kind="stable")]
    params = {"n_sample": 600, "redund_nn": 100, "seed": 7}
    want = zcore_fast.score(x, **params)
    monkeypatch.setattr(ray_rows, "MAX_BATCH_BYTES", 12 * 100 * 2 * 8)
    got = zcore_fast.score(x, workers=2, **ROWS, **params)
    np.testing.assert_array_equal(got, want)
    # First shares of nothing, never given up: every sample is asked again,
    # in chunks of the 8 samples whose full lists fit the budget.
    monkeypatch.setattr(ray_rows, "FIRST_MARGIN", -100.0)
    monkeypatch.setattr(ray_rows, "ASK_AGAIN_MOST", 2.0)
    asked = []
    ask_again = ray_rows._ask_again

    def counting(*args, **kw):
        asked.append(len(args[4]))  # the positions asked again
        return ask_again(*args, **kw)

    monkeypatch.setattr(ray_rows, "_ask_again", counting)
    got = zcore_fast.score(x, workers=2, **ROWS, **params)
    np.testing.assert_array_equal(got, want)
    assert sum(asked) == 600 and max(asked) > 8, asked


def test_more_workers_than_the_cluster_runs_at_once(cluster) -> None:
    """Row workers must all run at once: 9 asked of a 4-CPU cluster run as
    4 (the scores do not depend on the count)."""
    x = pool(22, n=400, d=4)
    want = zcore_fast.score(x, **FAST)
    got = zcore_fast.score(x, workers=9, **ROWS, **FAST)
    np.testing.assert_array_equal(got, want)


def test_tiny_pools(cluster) -> None:
    for n in (2, 3, 5):
        x = pool(15, n=n, d=3)
        for n_sample in (1, 7):
            want = zcore_fast.score(x, n_sample=n_sample, redund_nn=2)
            got = zcore_fast.score(x, n_sample=n_sample, redund_nn=2, workers=3, **ROWS)
            np.testing.assert_array_equal(got, want)


def test_errors_as_in_one_process(cluster, tmp_path: Path) -> None:
    x = pool(16, n=300)
    x[17, 2] = np.nan
    x[250, 0] = np.inf
    with pytest.raises(ValueError) as local:
        zcore_fast.score(x, **FAST)
    with pytest.raises(ValueError) as remote:
        zcore_fast.score(x, workers=2, **ROWS, **FAST)
    assert str(remote.value) == str(local.value)
    assert "17, 250" in str(remote.value)
    y = pool(17, n=300)
    for bad in ({"sample_dim": 11}, {"n_sample": 0}):
        with pytest.raises(ValueError) as local:
            zcore_fast.score(y, **bad)
        with pytest.raises(ValueError) as remote:
            zcore_fast.score(y, workers=2, **ROWS, **bad)
        assert str(remote.value) == str(local.value)
    with pytest.raises(ValueError, match="need at least 2 rows"):
        zcore_fast.score(y[:1], workers=2, **ROWS)
    with pytest.raises(ValueError, match="sharding= are for backend='ray'"):
        zcore_fast.score(y, sharding="rows")
    with pytest.raises(ValueError, match="'samples' or 'rows'"):
        zcore_fast.score(y, backend="ray", sharding="columns")
    # A worker that cannot read its shard names its node and the file.
    from zcore_fast.backends import ray_backend, ray_rows
    from zcore_fast.shards import open_shards

    np.save(tmp_path / "only_on_the_driver.npy", y)
    shards = open_shards(tmp_path / "only_on_the_driver.npy")
    (tmp_path / "only_on_the_driver.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"Ray node .* cannot read .*only_on_the_driver"):
        ray_rows.score_halves(
            [shards], n_sample=10, sample_dim=2, redund_nn=5, redund_exp=4.0, seed=0,
            options=ray_backend.RayOptions(workers=2),
        )  # fmt: skip
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="row sharding runs the Rust engine"):
        zcore_fast.score(y, device="cpu", **ROWS)


def test_killed_worker_restarts_the_run_and_scores_unchanged(cluster) -> None:
    x = pool(18, n=20_000, d=16)
    params: dict = {"redund_nn": 200, "seed": 1}
    # Long enough for a kill mid-run on any machine: about 4 s, measured on
    # a short row-sharded run first (its worker start-up counted too).
    start = time.perf_counter()
    zcore_fast.score(x, n_sample=20_000, workers=2, **ROWS, **params)
    per_sample = (time.perf_counter() - start) / 20_000
    params["n_sample"] = int(min(400_000, max(40_000, 4.0 / per_sample)))
    want = zcore_fast.score(x, **params)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not killed and 0 < done < total // 2:
            pids = actor_pids("_RowWorker")
            if pids:
                os.kill(pids[-1], signal.SIGKILL)
                killed.append(pids[-1])

    got = zcore_fast.score(x, workers=2, progress=progress, **ROWS, **params)
    assert killed, "the run ended before a worker could be killed"
    np.testing.assert_array_equal(got, want)


def test_a_raising_progress_callback_stops_every_worker(cluster) -> None:
    x = pool(19, n=20_000, d=16)

    class StopError(Exception):
        pass

    def progress(done: int, total: int) -> None:
        raise StopError

    with pytest.raises(StopError):
        zcore_fast.score(x, workers=2, n_sample=10**6, progress=progress, **ROWS)
    deadline = time.monotonic() + 20
    while actor_pids("_RowWorker") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not actor_pids("_RowWorker"), "workers still running after the run stopped"


def test_cli_sharding_rows(cluster, tmp_path: Path, capsys) -> None:
    x = pool(20, n=900)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, piece in enumerate(np.array_split(x, 4)):
        np.save(folder / f"part_{i}.npy", piece)
    flags = ["--n-sample", "3000", "--redund-nn", "25", "--budget", "50", "-q"]
    assert main(["select", str(folder), "-o", str(tmp_path / "a.npy"), *flags]) == 0
    ray_flags = ["--backend", "ray", "--workers", "3", "--sharding", "rows"]
    out = tmp_path / "b.npy"
    assert main(["select", str(folder), "-o", str(out), *flags, *ray_flags]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(out))
    assert main(["select", str(folder), "-o", str(out), *flags, "--sharding", "rows"]) == 2
    assert main(["select", str(folder), "-o", str(out), *flags, *ray_flags,
                 "--method", "moderate"]) == 2  # fmt: skip
    capsys.readouterr()
    json_flags = ["--n-sample", "500", "--redund-nn", "25", "--json"]
    assert main(["score", str(folder), "-o", str(tmp_path / "s.npy"), *json_flags,
                 *ray_flags]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    shards = summary["input"]["inputs"][0]["shards"]
    assert [s["first_row"] for s in shards] == [0, 225, 450, 675]
    assert summary["parameters"]["sharding"] == "rows"
