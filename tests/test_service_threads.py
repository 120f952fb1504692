"""Service use (issue 17): calls from several threads of one process at once.

Eight concurrent `score` / `select_with` calls on different pools (arrays and
.npy paths, float16 and float32, with and without the column cache, in
their own and in a shared cache directory; zcore, random, moderate,
typiclust, herding and ccs) must

- give the bits each gives alone (alone = in a fresh process of its own);
- stop one at a time: a call whose progress raises, or whose `cancel_on`
  event is set, stops promptly while the seven others finish unchanged;
- release the GIL throughout the native work (a counter thread keeps
  running, measured against a GIL-holding baseline);
- together peak at no more memory than the sum of what each needs alone.

The memory figures come from subprocesses running this file as a script
(`python test_service_threads.py alone|together POOLS OUT [INDEX]`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zcore_fast
from zcore_fast import _native
from zcore_fast.threads import SharedCap, blas_threads

#: Samples per ZCore call: enough for the calls to overlap for a while.
N_SAMPLE = 10_000

#: name: (rows, dims, dtype, seed) of each pool.
POOLS: dict[str, tuple[int, int, str, int]] = {
    "a16": (6000, 32, "float16", 1),
    "b32": (8000, 48, "float32", 2),
    "c32": (4000, 32, "float32", 3),
    "d16": (6000, 64, "float16", 4),
    "e32": (5000, 32, "float32", 5),
    "f32": (3000, 32, "float32", 6),
}


def make_pool(rows: int, dims: int, dtype: str, seed: int) -> np.ndarray:
    """Clustered rows (what embeddings look like to k-means)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dims)) * 3
    x = centres[rng.integers(0, 8, rows)] + rng.normal(size=(rows, dims))
    return x.astype(dtype)


def write_pools(directory: Path) -> None:
    """Every pool of POOLS as directory/<name>.npy."""
    for name, spec in POOLS.items():
        np.save(directory / f"{name}.npy", make_pool(*spec))


ProgressFn = Callable[[int, int], object]


@dataclass(frozen=True)
class Where:
    """Where a run's calls find their pools and keep their caches."""

    pools: Path
    caches: Path

    def path(self, name: str) -> str:
        return str(self.pools / f"{name}.npy")

    def array(self, name: str) -> np.ndarray:
        return np.load(self.path(name))  # in memory, not mapped: an array input


def _zcore_own_cache(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.score(
        w.path("a16"),
        n_sample=N_SAMPLE,
        seed=1,
        cache="always",
        cache_dir=w.caches / "own",
        progress=progress,
    )


def _zcore_shared_cache(seed: int) -> Callable[[Where, ProgressFn | None], np.ndarray]:
    # Two of these score the same file into the same cache directory: one
    # builds the entry while the other waits on its lock, then both use it.
    def run(w: Where, progress: ProgressFn | None) -> np.ndarray:
        return zcore_fast.score(
            w.path("b32"),
            n_sample=N_SAMPLE,
            seed=seed,
            threads=1,
            cache="always",
            cache_dir=w.caches / "shared",
            progress=progress,
        )

    return run


def _ccs(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.select_with(
        "ccs", w.array("c32"), 0.1, seed=4, n_sample=N_SAMPLE, progress=progress
    )


def _random(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.select_with("random", w.path("a16"), 0.1, seed=5, progress=progress)


def _moderate(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.select_with(
        "moderate", w.array("d16"), 0.1, seed=6, threads=1, progress=progress
    )


def _typiclust(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.select_with(
        "typiclust", w.path("e32"), 0.01, seed=7, threads=1, progress=progress
    )


def _herding(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.select_with(
        "herding", w.array("f32"), 0.05, seed=8, threads=2, progress=progress
    )


#: The eight calls, by name.
CALLS: dict[str, Callable[[Where, ProgressFn | None], np.ndarray]] = {
    "zcore_f16_own_cache": _zcore_own_cache,
    "zcore_f32_shared_cache_1": _zcore_shared_cache(2),
    "zcore_f32_shared_cache_2": _zcore_shared_cache(3),
    "ccs_array_f32": _ccs,
    "random_path_f16": _random,
    "moderate_array_f16": _moderate,
    "typiclust_path_f32": _typiclust,
    "herding_array_f32": _herding,
}


def run_together(
    w: Where, calls: dict[str, Callable[[Where, ProgressFn | None], np.ndarray]]
) -> dict[str, Any]:
    """Runs `calls` at once, one thread each; returns each one's result or
    the exception it raised."""
    start = threading.Barrier(len(calls))

    def one(call: Callable[[Where, ProgressFn | None], np.ndarray]) -> np.ndarray:
        start.wait()  # all begin together, so they overlap
        return call(w, None)

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(one, call) for name, call in calls.items()}
    out: dict[str, Any] = {}
    for name, future in futures.items():
        error = future.exception()
        out[name] = error if error is not None else future.result()
    return out


def memory_kib(field: str) -> int:
    """A line of /proc/self/status in KiB: VmHWM (peak RSS) or VmRSS."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _main(argv: list[str]) -> None:
    """Subprocess mode: run one call (`alone POOLS OUT INDEX`) or all eight
    at once (`together POOLS OUT`), save the results to OUT and print the
    peak RSS and the baseline (peak after imports) as JSON."""
    mode, pools, out = argv[0], Path(argv[1]), Path(argv[2])
    baseline = memory_kib("VmHWM")  # numpy and zcore_fast imported
    w = Where(pools, out / "caches")
    names = list(CALLS)
    start = time.perf_counter()
    if mode == "alone":
        name = names[int(argv[3])]
        results: dict[str, Any] = {name: CALLS[name](w, None)}
    else:
        results = run_together(w, CALLS)
    seconds = time.perf_counter() - start
    peak = memory_kib("VmHWM")
    for name, result in results.items():
        if isinstance(result, BaseException):
            raise result
        np.save(out / f"{name}.npy", result)
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "seconds": seconds}))


def _subprocess(*args: str) -> dict[str, Any]:
    env = dict(os.environ)
    # The package under test, wherever it was imported from.
    env["PYTHONPATH"] = str(Path(zcore_fast.__file__).parent.parent)
    run = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pools")
    write_pools(directory)
    return directory


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool whose column cache takes several 50 ms wakes to build (64 MB)."""
    path = tmp_path_factory.mktemp("big") / "big.npy"
    np.save(path, make_pool(1_000_000, 16, "float32", 9))
    return path


@pytest.fixture(scope="module")
def alone(pools: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each call run by itself in a fresh process (fresh caches): its result
    and peak memory. These are the results every concurrent run must give."""
    directories = [tmp_path_factory.mktemp(f"alone{i}") for i in range(len(CALLS))]
    # Two processes at a time: each measures only itself, and this halves
    # the wait on two cores.
    with ThreadPoolExecutor(2) as pool:
        figures = pool.map(
            lambda i: _subprocess("alone", str(pools), str(directories[i]), str(i)),
            range(len(CALLS)),
        )
    return {
        name: {**f, "result": np.load(d / f"{name}.npy")}
        for name, f, d in zip(CALLS, figures, directories)
    }


@pytest.fixture(scope="module")
def together(pools: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The eight calls at once, one thread each, in a fresh process."""
    directory = tmp_path_factory.mktemp("together")
    figures = _subprocess("together", str(pools), str(directory))
    results = {name: np.load(directory / f"{name}.npy") for name in CALLS}
    return {**figures, "results": results}


def test_concurrent_calls_give_the_results_of_calls_alone(
    alone: dict[str, Any], together: dict[str, Any]
) -> None:
    for name in CALLS:
        want, got = alone[name]["result"], together["results"][name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), f"{name} differs when run with the others"


def test_concurrent_calls_in_this_process_give_the_same_results(
    pools: Path, alone: dict[str, Any], tmp_path: Path
) -> None:
    """The same in the test's own process, already used by other tests; its
    BLAS thread counts must be left as found (three calls cap them)."""
    before = _blas_counts()
    got = run_together(Where(pools, tmp_path), CALLS)
    for name in CALLS:
        assert not isinstance(got[name], BaseException), got[name]
        assert np.array_equal(got[name], alone[name]["result"]), name
    # Libraries loaded meanwhile (faiss brings its own OpenBLAS) aside.
    assert [c for c in _blas_counts() if c[0] in dict(before)] == before
    assert blas_threads.active == ()


class ClientGoneError(Exception):
    """What the cancelled call's progress callback raises."""


#: The victim of the cancellation tests: ZCore with 10^8 samples (minutes
#: alone), building its column cache first, so "prompt" cannot be faked
#: by finishing.
LONG_N_SAMPLE = 100_000_000


def _victim(w: Where, progress: ProgressFn | None) -> np.ndarray:
    return zcore_fast.score(
        w.path("b32"),
        n_sample=LONG_N_SAMPLE,
        seed=2,
        cache="always",
        cache_dir=w.caches / "shared",
        progress=progress,
    )


@pytest.mark.parametrize("how", ["progress raises", "cancel_on event"])
def test_one_call_is_cancelled_the_seven_others_finish_unchanged(
    how: str, pools: Path, alone: dict[str, Any], tmp_path: Path
) -> None:
    w = Where(pools, tmp_path)
    victim = "zcore_f32_shared_cache_1"  # shares its cache entry with _2
    event = threading.Event()
    stopped: list[float] = []

    def progress(done: int, total: int) -> None:
        if how == "progress raises":
            stopped.append(time.perf_counter())
            raise ClientGoneError("client went away")
        if not event.is_set():
            stopped.append(time.perf_counter())
            event.set()  # as another thread would: the engine checks it itself

    def cancelled(w: Where, _: ProgressFn | None) -> np.ndarray:
        with zcore_fast.cancel_on(event):
            return _victim(w, progress)

    calls = {**CALLS, victim: cancelled}
    got = run_together(w, calls)
    returned = time.perf_counter()
    wanted = ClientGoneError if how == "progress raises" else zcore_fast.CancelledError
    assert isinstance(got[victim], wanted), got[victim]
    assert stopped, "the victim never reported progress"
    # 10^8 samples take minutes; the engine checks every 50 ms. The bound
    # is loose for a loaded machine (it also covers the others finishing).
    assert returned - stopped[0] < 30.0
    for name in CALLS:
        if name != victim:
            assert not isinstance(got[name], BaseException), (name, got[name])
            assert np.array_equal(got[name], alone[name]["result"]), name
    # The victim's cache entry is complete and in use by the other: no
    # temporaries are left in the shared directory.
    assert not [p for p in (tmp_path / "shared").iterdir() if p.name.endswith(".tmp")]


class SetAfterFirstCheck:
    """An event that reads as set from its second check on: the engine
    checks when a call starts and then at every 50 ms wake, so this one
    cancels a cache build at its first wake, mid-build."""

    def __init__(self) -> None:
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks > 1


def test_cancel_on_stops_a_cache_build_and_leaves_nothing(big: Path, tmp_path: Path) -> None:
    event = SetAfterFirstCheck()
    start = time.perf_counter()
    with zcore_fast.cancel_on(event), pytest.raises(zcore_fast.CancelledError):
        # 1,000 samples: were the build not stopped, this would end soon too.
        zcore_fast.score(str(big), n_sample=1_000, cache="always", cache_dir=tmp_path)
    assert event.checks == 2  # stopped at the build's first wake
    assert time.perf_counter() - start < 5.0
    # Neither the entry nor its temporary: a cut build removes what it wrote.
    assert not [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def test_cancel_on_stops_a_wait_for_another_calls_cache_build(
    pools: Path, tmp_path: Path
) -> None:
    """A call waiting for the entry another call is building (its lock held
    exclusively, here by the test) stops when its event is set."""
    from zcore_fast.cache.entries import SourceStat, entry_for
    from zcore_fast.cache.lock import hold

    path = str(pools / "b32.npy")
    stat, _ = SourceStat.of(path)
    entry = entry_for(tmp_path, [stat], "float32")
    event = threading.Event()
    with hold(entry.lock):  # "another call is building it"
        timer = threading.Timer(0.3, event.set)
        timer.start()
        start = time.perf_counter()
        with zcore_fast.cancel_on(event), pytest.raises(zcore_fast.CancelledError):
            zcore_fast.score(path, n_sample=1_000, cache="always", cache_dir=tmp_path)
        waited = time.perf_counter() - start
        timer.join()
    assert 0.25 < waited < 5.0
    assert not entry.npy.exists()


def test_cancel_on_stops_the_numpy_methods_between_steps(pools: Path) -> None:
    event = threading.Event()
    reports: list[int] = []

    def progress(done: int, total: int) -> None:
        reports.append(done)
        event.set()  # from the first step on, the method must stop

    for method, pool in (("typiclust", "e32"), ("moderate", "d16"), ("herding", "f32")):
        reports.clear()
        event.clear()
        with zcore_fast.cancel_on(event), pytest.raises(zcore_fast.CancelledError):
            zcore_fast.select_with(method, str(pools / f"{pool}.npy"), 0.01, progress=progress)
        assert len(reports) == 1, (method, reports)  # stopped at the next step


def test_cancel_on_is_per_thread_and_an_event_already_set_stops_at_once(
    pools: Path, tmp_path: Path
) -> None:
    event = threading.Event()
    event.set()
    x = np.load(pools / "c32.npy")
    start = time.perf_counter()
    with zcore_fast.cancel_on(event), pytest.raises(zcore_fast.CancelledError):
        zcore_fast.score(x, n_sample=LONG_N_SAMPLE)
    assert time.perf_counter() - start < 5.0
    # Each of the eight calls (random included) stops before its work.
    w = Where(pools, tmp_path)
    for name, call in CALLS.items():
        with zcore_fast.cancel_on(event), pytest.raises(zcore_fast.CancelledError):
            call(w, None)
            pytest.fail(f"{name} was not cancelled")
    # Another thread is outside the scope, even while this one is inside.
    with zcore_fast.cancel_on(event), ThreadPoolExecutor(1) as pool:
        other = pool.submit(zcore_fast.score, x, n_sample=1000).result()
    assert other.shape == (x.shape[0],)
    assert _native.CANCEL_EVENT.get() is None  # the scope ended with the with


def _blas_counts(per_thread: bool = False) -> list[tuple[str, int]]:
    """(path, threads) of the BLAS libraries loaded whose count is the
    process's (or, `per_thread`, the calling thread's: faiss's OpenMP
    OpenBLAS), as seen from the calling thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return sorted(
        (info["filepath"], info["num_threads"])
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
        and (info.get("threading_layer") == "openmp") == per_thread
    )


def _overlap(read: Callable[[], object]) -> dict[str, tuple[object, object, object]]:
    """The interleaving that broke threadpoolctl's save/set/restore: A caps
    at 1, B caps at 2, A leaves, B leaves. Per thread, `read()` before its
    cap, inside it (A's while both are in force, B's with only its own)
    and after it, each read in that thread."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[object, object, object]] = {}

    def a() -> None:
        before = read()
        with blas_threads(1):
            a_in.set()
            b_in.wait()
            during = read()
        a_out.set()
        seen["a"] = (before, during, read())

    def b() -> None:
        a_in.wait()
        before = read()
        with blas_threads(2):
            b_in.set()
            a_out.wait()
            during = read()
        seen["b"] = (before, during, read())

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen


def test_overlapping_blas_caps_leave_the_process_as_found() -> None:
    """A process-wide count is the smallest cap in force, and the original
    after both calls. In a fresh process: OpenBLAS (0.3.31, NumPy's) ignores
    a count set from any other thread once its main thread has set one, as
    earlier tests in this process do, so the caps of calls from worker
    threads only take effect where the main thread never set a count."""
    pytest.importorskip("threadpoolctl")
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy
from test_service_threads import _blas_counts, _overlap
before = _blas_counts()
seen = _overlap(_blas_counts)
print(json.dumps({{"before": before, "seen": seen, "after": _blas_counts()}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["before"], "no process-wide BLAS library loaded"
    assert all(n == 1 for path, n in got["seen"]["a"][1])  # both caps in force: the smaller
    assert all(n == 2 for path, n in got["seen"]["b"][1])  # only B's left
    assert got["after"] == got["before"]


def test_per_thread_blas_is_capped_in_the_calling_thread() -> None:
    """faiss-cpu's OpenBLAS keeps its count per thread (OpenMP's setting):
    each call's cap applies in its own thread, and each thread gets its own
    count back (a process-wide save and restore from the last thread out
    left the first thread capped for good)."""
    pytest.importorskip("faiss")  # brings the OpenMP OpenBLAS
    if not _blas_counts(per_thread=True):
        pytest.skip("no per-thread BLAS library loaded")
    seen = _overlap(lambda: _blas_counts(per_thread=True))
    for name, cap in (("a", 1), ("b", 2)):
        before, during, after = seen[name]
        assert all(n == cap for path, n in during), (name, during)  # type: ignore[attr-defined]
        assert after == before, name


def test_shared_cap_counts_nested_and_overlapping_caps() -> None:
    state = {"n": 8}
    log: list[int] = []

    def set_threads(n: int, originals: dict[str, int]) -> None:
        originals.setdefault("x", state["n"])
        state["n"] = n
        log.append(n)

    cap = SharedCap(set_threads, lambda originals: state.update(n=originals["x"]))
    with cap(4):
        with cap(2), cap(None):
            assert state["n"] == 2
        assert state["n"] == 4
    assert state["n"] == 8 and log == [4, 2, 4]
    assert cap.active == ()


# --- The GIL ---------------------------------------------------------------

#: Width of the time slots the counter thread must show up in.
SLOT = 0.02


def coverage(work: Callable[[], object]) -> float:
    """The fraction of SLOT-wide time slots, while `work()` runs in this
    thread, in which a second Python thread ran at all. Near 1 when `work`
    leaves the GIL free (minus what the CPUs' load takes), near 0 when it
    holds it."""
    stop = threading.Event()
    seen: set[int] = set()
    origin = time.perf_counter()

    def count() -> None:
        while not stop.is_set():
            seen.add(int((time.perf_counter() - origin) / SLOT))

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)  # the counter is running
    start = time.perf_counter()
    work()
    end = time.perf_counter()
    stop.set()
    counter.join()
    first, last = int((start - origin) / SLOT) + 1, int((end - origin) / SLOT)
    slots = range(first, last)  # whole slots inside the work only
    assert len(slots) >= 10, f"work took only {end - start:.3f} s; make it longer"
    return sum(s in seen for s in slots) / len(slots)


def _repeat(call: Callable[[], object], seconds: float) -> Callable[[], None]:
    """`call` over and over for about `seconds`: the native step alone is
    short, so many of it fill the measured time (Python between calls is
    a few microseconds)."""

    def work() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            call()

    return work


def _hold_gil(seconds: float) -> Callable[[], None]:
    """A baseline that holds the GIL: one C-level loop (sum over a range
    never returns to the interpreter, which is where the GIL is handed
    over), sized to take about `seconds`."""
    n = 1_000_000
    start = time.perf_counter()
    sum(range(n))
    per_item = (time.perf_counter() - start) / n
    big = max(n, int(seconds / max(per_item, 1e-9)))
    return lambda: sum(range(big))


def test_native_calls_release_the_gil_throughout(big: Path, pools: Path, tmp_path: Path) -> None:
    path, array = str(big), np.load(big)
    seconds = 0.8
    # Each long native call, one core each so the counter has the other:
    # building the column cache, preparing a pool (transpose + per-dim
    # stats) and scoring.
    natives: dict[str, Callable[[], None]] = {
        "build_cache": _repeat(
            lambda: _native.build_cache([path], str(tmp_path / "c.npy"), threads=1), seconds
        ),
        "prepare": _repeat(lambda: _native.dim_stats([array]), seconds),
        "score": _repeat(
            lambda: zcore_fast.score(
                str(pools / "b32.npy"),
                n_sample=5_000,
                threads=1,
                cache="always",
                cache_dir=tmp_path / "cache",
            ),
            seconds,
        ),
    }
    free = coverage(lambda: time.sleep(seconds))
    held = coverage(_hold_gil(seconds))
    # The measure tells the two apart on this machine, however loaded.
    assert held < 0.5 * free, (held, free)
    for name, work in natives.items():
        got = coverage(work)
        assert got > held + 0.5 * (free - held), (name, got, free, held)


# --- Memory ----------------------------------------------------------------

#: Allowed excess of the concurrent peak over the sum of the calls' own
#: needs: the stacks and malloc arenas of the eight callers' threads and
#: their pools. (Measured: 96 MiB together against 45 + 71 = 116 MiB, so
#: the bound holds without it; a copy of a pool kept per thread, or caches
#: that outlive a call, would not.)
SLACK_KIB = 16 * 1024


def test_concurrent_peak_memory_is_bounded_by_the_sum_of_the_calls(
    alone: dict[str, Any], together: dict[str, Any]
) -> None:
    own = {name: a["peak_kib"] - a["baseline_kib"] for name, a in alone.items()}
    bound = together["baseline_kib"] + sum(own.values()) + SLACK_KIB
    report = ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in own.items())
    assert together["peak_kib"] <= bound, (
        f"together {together['peak_kib'] / 1024:.0f} MiB (baseline "
        f"{together['baseline_kib'] / 1024:.0f}) > bound {bound / 1024:.0f} MiB; "
        f"each alone above its baseline (MiB): {report}"
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
