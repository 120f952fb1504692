"""The out-of-core column cache: built once, reused while the input is
unchanged, never stale, atomic, safe under concurrency, and its CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import zcore_fast
from reference import clustered
from zcore_fast import _native
from zcore_fast.cache import admin as cache_admin
from zcore_fast.cache import build as zcache
from zcore_fast.cache import lock as cache_lock
from zcore_fast.cache.entries import Entry
from zcore_fast.cli import main

FAST = {"n_sample": 2000, "redund_nn": 20, "backend": "cpu", "threads": 2}


@pytest.fixture(autouse=True)
def default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keeps every test (and its default cache) out of the real ~/.cache."""
    where = tmp_path / "default-cache"
    monkeypatch.setenv("ZCORE_FAST_CACHE_DIR", str(where))
    return where


@pytest.fixture()
def emb(tmp_path: Path) -> Path:
    path = tmp_path / "emb.npy"
    np.save(path, clustered(400, 6, seed=0))
    return path


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def entry_files(directory: Path) -> list[str]:
    """Cache data and sidecar files (not lock files)."""
    return [n for n in files(directory) if n.endswith((".npy", ".json", ".tmp"))]


def forbid_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_cache called: the cache was rebuilt")

    monkeypatch.setattr(_native, "build_cache", fail)


def test_built_once_then_reused(emb: Path, tmp_path: Path, monkeypatch) -> None:
    cdir = tmp_path / "c"
    first = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    assert first.cache_path is not None and first.cache_seconds > 0.0
    cached = Path(first.cache_path)
    assert cached.parent == cdir and cached.name.startswith("columns-")
    assert cached.with_suffix(".json").exists()
    before = cached.stat()
    forbid_builds(monkeypatch)
    second = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    assert second.cache_path == first.cache_path and second.cache_seconds == 0.0
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.scores.tobytes() == first.scores.tobytes()
    sidecar = json.loads(cached.with_suffix(".json").read_text())
    assert (sidecar["rows"], sidecar["cols"], sidecar["dtype"]) == (400, 6, "float32")
    assert sidecar["sources"][0]["path"] == os.path.realpath(emb)
    assert sidecar["bytes"] == after.st_size


def test_cached_copy_is_the_dimension_major_pool(emb: Path, tmp_path: Path) -> None:
    (path,) = zcache.prepare([str(emb)], cache="always", cache_dir=tmp_path / "c", threads=2)
    copy = np.load(path, mmap_mode="r")
    assert copy.flags.f_contiguous and np.array_equal(copy, np.load(emb))


@pytest.mark.parametrize(
    ("dtypes", "rows"),
    [
        (["float32"], 400),
        (["float16"], 400),
        (["float64"], 400),
        (["float32", "float16"], 400),
        (["float16", "float16"], 400),
        # Enough rows that the engine scores float16 columns in place.
        (["float16"], 1 << 17),
    ],
)
def test_scores_bit_identical_with_and_without(tmp_path: Path, dtypes, rows: int) -> None:
    paths = []
    for i, dtype in enumerate(dtypes):
        paths.append(tmp_path / f"part{i}.npy")
        np.save(paths[-1], clustered(rows, 3 + i, seed=i).astype(dtype))
    fast = {**FAST, "n_sample": 300} if rows > 1000 else FAST
    plain = zcore_fast.score(paths, cache="never", **fast)
    report = zcore_fast.score_report(paths, cache="always", cache_dir=tmp_path / "c", **fast)
    assert report.cache_path is not None
    want = "float16" if set(dtypes) == {"float16"} else "float32"
    assert np.load(report.cache_path, mmap_mode="r").dtype == want
    assert report.scores.tobytes() == plain.tobytes()


def test_changed_source_is_never_served_from_the_old_cache(emb: Path, tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    old = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    size = emb.stat().st_size
    new_values = clustered(400, 6, seed=9)
    np.save(emb, new_values)  # same shape and dtype: same size and header
    assert emb.stat().st_size == size
    st = emb.stat()
    os.utime(emb, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    new = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    assert new.cache_path != old.cache_path and new.cache_seconds > 0.0
    assert new.scores.tobytes() == zcore_fast.score(new_values, **FAST).tobytes()
    assert new.scores.tobytes() != old.scores.tobytes()
    # The old entry can never be used again; the build removed it.
    assert not Path(old.cache_path).exists()
    assert len([n for n in files(cdir) if n.endswith(".npy")]) == 1


@pytest.mark.parametrize("damage", ["sidecar_sources", "sidecar_missing", "truncated"])
def test_entry_verified_on_use(emb: Path, tmp_path: Path, damage: str) -> None:
    cdir = tmp_path / "c"
    first = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    cached = Path(first.cache_path)
    sidecar = cached.with_suffix(".json")
    if damage == "sidecar_sources":
        record = json.loads(sidecar.read_text())
        record["sources"][0]["size"] += 1
        sidecar.write_text(json.dumps(record))
    elif damage == "sidecar_missing":
        sidecar.unlink()
    else:
        with open(cached, "r+b") as f:
            f.truncate(cached.stat().st_size - 4)
    again = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    assert again.cache_path == first.cache_path and again.cache_seconds > 0.0
    assert again.scores.tobytes() == first.scores.tobytes()


def test_disk_too_small_fails_before_writing(emb: Path, tmp_path: Path, monkeypatch) -> None:
    cdir = tmp_path / "c"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(zcache.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    forbid_builds(monkeypatch)
    with pytest.raises(zcore_fast.ZCoreError, match=r"need [\d,]+ bytes, 100 free.*--cache-dir"):
        zcore_fast.score(emb, cache="always", cache_dir=cdir, **FAST)
    assert files(cdir) == []


def test_disk_too_small_on_the_command_line(emb: Path, tmp_path: Path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(zcache.shutil, "disk_usage", lambda path: usage(10**6, 10**6, 0))
    out = tmp_path / "s.npy"
    argv = ["score", str(emb), "-o", str(out), "--cache", "always", "--n-sample", "100"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "not enough disk space" in err and "--cache never" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_failed_build_leaves_nothing(emb: Path, tmp_path: Path, monkeypatch, error) -> None:
    cdir = tmp_path / "c"
    seen: list[str] = []

    def partial(inputs, out_path, **kwargs):
        seen.append(out_path)
        Path(out_path).write_bytes(b"\x93NUMPY partial")
        raise error("stop")

    monkeypatch.setattr(_native, "build_cache", partial)
    with pytest.raises(error):
        zcore_fast.score(emb, cache="always", cache_dir=cdir, **FAST)
    assert seen and Path(seen[0]).parent == cdir  # the temp file was beside the entry
    assert files(cdir) == []


def test_interrupted_build_then_succeeds(emb: Path, tmp_path: Path, monkeypatch) -> None:
    cdir = tmp_path / "c"
    real = _native.build_cache

    def interrupted(inputs, out_path, *, threads, progress=None):
        # The real build, stopped from its progress callback like Ctrl-C.
        def stop(done: int, total: int) -> None:
            raise KeyboardInterrupt

        return real(inputs, out_path, threads=threads, progress=stop)

    monkeypatch.setattr(_native, "build_cache", interrupted)
    with pytest.raises(KeyboardInterrupt):
        zcore_fast.score(emb, cache="always", cache_dir=cdir, **FAST)
    assert files(cdir) == []
    monkeypatch.setattr(_native, "build_cache", real)
    done = zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST)
    assert done.cache_seconds > 0.0


def _score_in_child(path: str, cache_dir: str, barrier, results) -> None:
    """Scores `path` after `barrier`, with a build slow enough that the other
    process arrives while it runs."""
    real = _native.build_cache

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    _native.build_cache = slow
    barrier.wait()
    report = zcore_fast.score_report(path, cache="always", cache_dir=cache_dir, **FAST)
    results.put((report.scores.tobytes(), report.cache_path, report.cache_seconds > 0.0))


def test_two_processes_share_one_build(emb: Path, tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_score_in_child, args=(str(emb), str(cdir), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (scores_a, path_a, built_a), (scores_b, path_b, built_b) = got
    assert scores_a == scores_b and path_a == path_b
    assert built_a != built_b  # exactly one of them built the entry
    assert scores_a == zcore_fast.score(emb, cache="never", **FAST).tobytes()
    assert entry_files(cdir) == [Path(path_a).with_suffix(".json").name, Path(path_a).name]


def test_auto_caches_only_large_file_inputs(emb: Path, tmp_path: Path, monkeypatch) -> None:
    cdir = tmp_path / "c"
    assert zcore_fast.score_report(emb, cache_dir=cdir, **FAST).cache_path is None
    assert files(cdir) == []
    array = np.load(emb)
    # Arrays are never cached, not even when forced.
    assert zcore_fast.score_report(array, cache=True, cache_dir=cdir, **FAST).cache_path is None
    mixed = zcore_fast.score_report([emb, array], cache=True, cache_dir=cdir, **FAST)
    assert mixed.cache_path is None
    monkeypatch.setattr(zcache, "AUTO_BYTES", 400 * 6 * 4 - 1)
    report = zcore_fast.score_report(emb, cache_dir=cdir, **FAST)
    assert report.cache_path is not None
    assert zcore_fast.score_report(emb, cache=False, cache_dir=cdir, **FAST).cache_path is None


def test_auto_skips_a_file_already_dimension_major(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(clustered(400, 6, seed=0)))
    monkeypatch.setattr(zcache, "AUTO_BYTES", 0)
    assert zcore_fast.score_report(path, cache_dir=tmp_path / "c", **FAST).cache_path is None


def test_bad_cache_value_is_refused(emb: Path) -> None:
    with pytest.raises(ValueError, match="cache must be one of auto, always, never"):
        zcore_fast.score(emb, cache="sometimes", **FAST)


def test_unreadable_input_is_left_to_the_engine(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a npy file at all")
    with pytest.raises((ValueError, zcore_fast.ZCoreError)):
        zcore_fast.score(bad, cache="always", cache_dir=tmp_path / "c", **FAST)
    assert files(tmp_path / "c") == []


def test_env_var_and_default_dirs(emb: Path, default_dir: Path, monkeypatch) -> None:
    report = zcore_fast.score_report(emb, cache="always", **FAST)
    assert Path(report.cache_path).parent == default_dir
    monkeypatch.delenv("ZCORE_FAST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert zcache.default_cache_dir() == Path("/xdg/zcore-fast")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert zcache.default_cache_dir() == Path("/home/someone/.cache/zcore-fast")


def test_cli_flags_and_json_summary(emb: Path, tmp_path: Path, capsys) -> None:
    cdir = tmp_path / "c"
    argv = ["select", str(emb), "--budget", "0.1", "-o", str(tmp_path / "k.npy"), "--json"]
    argv += ["--n-sample", "2000", "--redund-nn", "20"]
    argv += ["--cache", "always", "--cache-dir", str(cdir)]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["cache"]
    assert first["built"] and first["seconds"] >= 0 and Path(first["path"]).parent == cdir
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)["cache"]
    assert second == {"path": first["path"], "built": False, "seconds": 0.0}
    assert main([*argv[:-4], "--cache", "never"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["path"] is None


def test_cli_cache_flags_only_for_zcore(emb: Path, tmp_path: Path, capsys) -> None:
    argv = ["select", str(emb), "--budget", "0.1", "-o", str(tmp_path / "k.npy")]
    assert main([*argv, "--method", "random", "--cache", "always"]) == 2
    assert "--method zcore" in capsys.readouterr().err
    assert main(["score", str(emb), "-o", str(tmp_path / "s.npy"), "--cache", "maybe"]) == 2


def test_cli_cache_show_and_clear(tmp_path: Path, capsys) -> None:
    cdir = tmp_path / "c"
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, clustered(300, 4, seed=1))
    np.save(b, clustered(300, 4, seed=2))
    keep = zcore_fast.score_report(a, cache="always", cache_dir=cdir, **FAST).cache_path
    gone = zcore_fast.score_report(b, cache="always", cache_dir=cdir, **FAST).cache_path
    assert main(["cache", "--cache-dir", str(cdir)]) == 0
    out = capsys.readouterr().out
    assert Path(keep).name in out and Path(gone).name in out and str(a.resolve()) in out
    assert "300 x 4 float32" in out and "2 entries" in out and "STALE" not in out
    b.unlink()  # its entry is now stale
    assert main(["cache", "show", "--cache-dir", str(cdir), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    stale = {Path(e["path"]).name: e["stale"] for e in listing["entries"]}
    assert stale == {Path(keep).name: False, Path(gone).name: True}
    assert "vanished" in next(e["problem"] for e in listing["entries"] if e["stale"])
    assert main(["cache", "clear", "--stale", "--cache-dir", str(cdir)]) == 0
    out = capsys.readouterr().out
    assert f"removed {Path(gone).name}" in out and Path(keep).name not in out
    assert entry_files(cdir) == [Path(keep).with_suffix(".json").name, Path(keep).name]
    assert main(["cache", "clear", "--cache-dir", str(cdir)]) == 0
    assert f"removed {Path(keep).name}" in capsys.readouterr().out
    assert files(cdir) == []
    assert main(["cache", "--cache-dir", str(cdir)]) == 0
    assert "empty" in capsys.readouterr().out


def test_cli_cache_usage_errors(capsys) -> None:
    assert main(["cache", "show", "--stale"]) == 2
    assert "--stale applies to `cache clear`" in capsys.readouterr().err
    assert main(["cache", "purge"]) == 2


def test_cli_cache_uses_env_var(emb: Path, default_dir: Path, capsys) -> None:
    zcore_fast.score(emb, cache="always", **FAST)
    assert main(["cache"]) == 0
    assert str(default_dir) in capsys.readouterr().out


def test_clear_skips_an_entry_in_use(emb: Path, tmp_path: Path, capsys) -> None:
    cdir = tmp_path / "c"
    path = Path(zcore_fast.score_report(emb, cache="always", cache_dir=cdir, **FAST).cache_path)
    with cache_lock.hold(Entry(cdir, path.stem).lock, shared=True):  # as a scoring run does
        assert main(["cache", "clear", "--cache-dir", str(cdir)]) == 0
        assert "in use" in capsys.readouterr().out
        assert path.exists()
    assert main(["cache", "clear", "--cache-dir", str(cdir)]) == 0
    assert not path.exists()


def test_clear_removes_only_old_leftover_temp_files(emb: Path, tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    cdir.mkdir()
    old, fresh = (Entry(cdir, f"columns-{c * 16}").temp_path() for c in "ab")
    for temp in (old, fresh):
        temp.write_bytes(b"partial")
    hour_ago = time.time() - cache_admin.TEMP_MAX_AGE - 60
    os.utime(old, (hour_ago, hour_ago))
    cleared = cache_admin.clear(cdir)
    assert cleared.removed == [(old.name, 7)]
    assert files(cdir) == [fresh.name]


def test_locks_exclude_and_survive_removal(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with cache_lock.hold(lock):
        with cache_lock.try_hold(lock) as free:
            assert not free
    with cache_lock.hold(lock, shared=True), cache_lock.hold(lock, shared=True):
        with cache_lock.try_hold(lock) as free:
            assert not free
    with cache_lock.try_hold(lock) as free:
        assert free
        cache_lock.remove_held(lock)
    assert not lock.exists()
    with cache_lock.try_hold(lock) as free:
        assert free


def test_no_temp_files_or_half_entries_after_success(emb: Path, tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    zcore_fast.score(emb, cache="always", cache_dir=cdir, **FAST)
    names = files(cdir)
    assert not [n for n in names if n.endswith(".tmp")]
    assert sorted(Path(n).suffix for n in names) == [".json", ".lock", ".npy"]


def test_build_reports_its_own_progress(emb: Path, tmp_path: Path) -> None:
    built: list[tuple[int, int]] = []
    samples: list[tuple[int, int]] = []
    zcore_fast.score(
        emb,
        cache="always",
        cache_dir=tmp_path / "c",
        cache_progress=lambda done, total: built.append((done, total)),
        progress=lambda done, total: samples.append((done, total)),
        **FAST,
    )
    # The engine counts rows (400) done; the brief said columns (6): either is a full build.
    assert built and built[-1][0] == built[-1][1] in (400, 6)
    assert all(total == FAST["n_sample"] for _, total in samples)


def test_progress_bar_stage_takes_over_while_it_reports() -> None:
    from zcore_fast.progress import ProgressBar

    with ProgressBar(enabled=True, total=None) as bar:
        building = bar.stage("building column cache", "rows")
        building(3, 6)
        shown = {t.description: t.visible for t in bar._progress.tasks}
        assert shown == {"scoring": False, "building column cache": True}
        bar.update(10, 100)
        shown = {t.description: t.visible for t in bar._progress.tasks}
        assert shown == {"scoring": True, "building column cache": False}
