"""Row-sharded .npy pools (a folder or glob of shards concatenated along
rows): the same scores, selections and evaluations as the one array they
make (the oracle), on fresh random splits, with and without the column
cache, side by side with other inputs, and clear errors naming the shard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from zcore_fast.cli import main
from zcore_fast.shards import open_shards

FAST = {"n_sample": 2_000, "redund_nn": 20}


def split(folder: Path, x: np.ndarray, parts: int, rng: np.random.Generator, stem: str = "emb"):
    """x cut at random rows into `parts` shards named so that sorted-name
    order is row order (img_emb_00.npy, ...); some shards Fortran-order."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=parts - 1, replace=False))
    for i, piece in enumerate(np.split(x, cuts)):
        data = np.asfortranarray(piece) if rng.random() < 0.5 else piece
        np.save(folder / f"{stem}_{i:02d}.npy", data)
    return folder


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("cache", ["never", "always"])
def test_shard_folder_scores_as_the_array(tmp_path: Path, dtype: type, cache: str) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((int(rng.integers(200, 900)), int(rng.integers(2, 24))))
        x = x.astype(dtype)
        folder = split(tmp_path / f"s{seed}", x, int(rng.integers(2, 6)), rng)
        got = zcore_fast.score_report(
            folder, seed=seed, cache=cache, cache_dir=tmp_path / "cache", **FAST
        )
        np.testing.assert_array_equal(got.scores, zcore_fast.score(x, seed=seed, **FAST))
        assert (got.cache_path is not None) == (cache == "always")


def test_glob_and_side_by_side_inputs(tmp_path: Path) -> None:
    """CLIP shards beside ResNet shards (different cuts, same rows) and a
    plain array: the same as the three arrays side by side."""
    rng = np.random.default_rng(7)
    clip = rng.standard_normal((600, 8)).astype(np.float32)
    resnet = rng.standard_normal((600, 5)).astype(np.float16)
    extra = rng.standard_normal((600, 3)).astype(np.float32)
    split(tmp_path / "clip", clip, 3, rng, "img_emb")
    split(tmp_path / "resnet", resnet, 4, rng, "img_emb")
    want = zcore_fast.score([clip, resnet, extra], **FAST)
    pattern = str(tmp_path / "clip" / "img_emb_*.npy")
    for cache in ("never", "always"):
        kw = {"cache": cache, "cache_dir": tmp_path / "cache", **FAST}
        np.testing.assert_array_equal(zcore_fast.score([pattern, tmp_path / "resnet"], **kw),
                                      zcore_fast.score([clip, resnet], **FAST))  # fmt: skip
        np.testing.assert_array_equal(
            zcore_fast.score([tmp_path / "clip", tmp_path / "resnet", extra], **kw), want
        )


@pytest.mark.parametrize("method", ["moderate", "random", "typiclust", "herding", "ccs"])
def test_every_method_on_shards(tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    folder = split(tmp_path / "s", x, 3, rng)
    options = {"n_sample": 2_000, "redund_nn": 20} if method == "ccs" else {}
    np.testing.assert_array_equal(
        zcore_fast.select_with(method, folder, 25, seed=3, **options),
        zcore_fast.select_with(method, x, 25, seed=3, **options),
    )


def test_cli_select_reports_shards_and_offsets(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((700, 6)).astype(np.float32)
    folder = split(tmp_path / "s", x, 3, rng)
    out = tmp_path / "keep.csv"
    code = main(["select", str(folder), "--budget", "30", "-o", str(out), "--json",
                 "--n-sample", "2000", "--redund-nn", "20", "--cache", "always",
                 "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    shards = summary["input"]["inputs"][0]["shards"]
    assert [s["path"] for s in shards] == sorted(str(p) for p in folder.glob("*.npy"))
    sizes = [np.load(s["path"], mmap_mode="r").shape[0] for s in shards]
    assert [s["first_row"] for s in shards] == np.cumsum([0, *sizes[:-1]]).tolist()
    assert summary["cache"]["built"] and summary["n"] == 700
    want = zcore_fast.select(zcore_fast.score(x, **FAST), 30)
    rows = [int(line.split(",")[0]) for line in out.read_text().splitlines()[1:]]
    assert rows == want.tolist()  # global row numbers


def test_evaluate_reads_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal((400, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=400)
    folder = split(tmp_path / "s", x, 2, rng)
    kw = {"methods": ["random"], "budgets": [40], "seeds": 1, "probes": ["knn"]}
    a = zcore_fast.evaluate(folder, labels, **kw).to_dict()
    b = zcore_fast.evaluate(x, labels, **kw).to_dict()
    assert a["n_train"] == b["n_train"] and a["dims"] == 5
    assert [r["accuracy"] for r in a["runs"]] == [r["accuracy"] for r in b["runs"]]


def test_shard_errors_name_the_file(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(14)
    folder = tmp_path / "s"
    folder.mkdir()
    np.save(folder / "a.npy", rng.standard_normal((10, 4)).astype(np.float32))
    np.save(folder / "b.npy", rng.standard_normal((10, 5)).astype(np.float32))
    with pytest.raises(ValueError, match=r"b.npy has 5 dimensions, .*a.npy has 4"):
        zcore_fast.score(folder)
    np.save(folder / "b.npy", rng.standard_normal((10, 4)).astype(np.float16))
    with pytest.raises(ValueError, match=r"b.npy holds float16, .*a.npy holds float32"):
        zcore_fast.score(folder)
    np.save(folder / "b.npy", np.zeros((10, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"b.npy: a shard must be a 2-D float16/32/64 array"):
        zcore_fast.score(folder)
    (folder / "b.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"b\.npy"):
        zcore_fast.score(folder)
    (folder / "b.npy").unlink()
    other = tmp_path / "o"
    split(other, rng.standard_normal((11, 2)).astype(np.float32), 2, rng)
    with pytest.raises(ValueError, match=r"has 11 rows, .* has 10; inputs side by side"):
        zcore_fast.score([folder, other])
    with pytest.raises(FileNotFoundError, match=r"no \.npy files match"):
        zcore_fast.score(str(tmp_path / "nothing_*.npy"))
    with pytest.raises(ValueError, match=r"not to \.npy shards"):
        zcore_fast.score(folder, column="x")
    code = main(["select", str(folder), "--budget", "2", "-o", str(folder / "keep.npy")])
    assert code == 2 and "inside the shard folder" in capsys.readouterr().err


def test_open_shards_orders_by_name(tmp_path: Path) -> None:
    for name in ("img_emb_10.npy", "img_emb_02.npy", "img_emb_01.npy"):
        np.save(tmp_path / name, np.zeros((int(name[8:10]), 3), dtype=np.float32))
    (tmp_path / "meta.parquet.txt").write_text("not a shard")
    shards = open_shards(tmp_path)
    assert [os.path.basename(f) for f in shards.files] == [
        "img_emb_01.npy",
        "img_emb_02.npy",
        "img_emb_10.npy",
    ]
    assert shards.offsets == [0, 1, 3] and shards.n == 13
