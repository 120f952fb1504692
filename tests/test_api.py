"""The Python API: inputs, determinism, threads, progress, GIL release."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import zcore_fast
from reference import clustered

FAST = {"n_sample": 2000, "redund_nn": 50, "backend": "cpu"}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return clustered(600, 16, seed=0)


def test_score_shape_range_dtype(x: np.ndarray) -> None:
    s = zcore_fast.score(x, **FAST)
    assert s.dtype == np.float32 and s.shape == (600,)
    assert s.min() == 0.0 and s.max() == 1.0


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_same_seed_same_bits_for_any_thread_count(x: np.ndarray, threads: int) -> None:
    one = zcore_fast.score(x, threads=1, seed=4, **FAST)
    many = zcore_fast.score(x, threads=threads, seed=4, **FAST)
    assert one.tobytes() == many.tobytes()
    assert zcore_fast.score(x, threads=threads, seed=4, **FAST).tobytes() == one.tobytes()


def test_seed_changes_result(x: np.ndarray) -> None:
    assert not np.array_equal(zcore_fast.score(x, seed=1, **FAST), zcore_fast.score(x, **FAST))


def test_dtypes_orders_memmaps_and_files_agree(x: np.ndarray, tmp_path) -> None:
    base = zcore_fast.score(x, **FAST)
    variants = [np.asfortranarray(x), x.astype(np.float64)]
    for version in [(1, 0), (2, 0), (3, 0)]:
        path = tmp_path / f"v{version[0]}.npy"
        with open(path, "wb") as fh:
            np.lib.format.write_array(fh, x, version=version)
        variants.append(str(path))
    fortran_file = tmp_path / "f.npy"
    np.save(fortran_file, np.asfortranarray(x))
    variants += [fortran_file, np.load(fortran_file, mmap_mode="r")]
    for v in variants:
        assert zcore_fast.score(v, **FAST).tobytes() == base.tobytes(), type(v)
    half = x.astype(np.float16)
    np.save(tmp_path / "h.npy", half)
    assert np.array_equal(
        zcore_fast.score(half, **FAST), zcore_fast.score(str(tmp_path / "h.npy"), **FAST)
    )


def test_concatenation_along_dimensions(x: np.ndarray, tmp_path) -> None:
    np.save(tmp_path / "b.npy", x[:, 10:])
    joined = zcore_fast.score([x[:, :10], tmp_path / "b.npy"], **FAST)
    assert joined.tobytes() == zcore_fast.score(x, **FAST).tobytes()


def test_input_is_never_modified(x: np.ndarray, tmp_path) -> None:
    path = tmp_path / "e.npy"
    np.save(path, x)
    before = path.read_bytes()
    copy = x.copy()
    zcore_fast.score([x, path], **FAST)
    assert path.read_bytes() == before and np.array_equal(x, copy)


def test_progress_reports_to_the_end_and_can_cancel(x: np.ndarray) -> None:
    seen: list[tuple[int, int]] = []
    zcore_fast.score(x, progress=lambda d, t: seen.append((d, t)), **FAST)
    assert seen[-1] == (2000, 2000)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))

    def stop(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        zcore_fast.score(x, n_sample=10**9, progress=stop)


def test_progress_runs_on_the_calling_thread(x: np.ndarray) -> None:
    callers: set[int] = set()
    zcore_fast.score(x, progress=lambda d, t: callers.add(threading.get_ident()), **FAST)
    assert callers == {threading.get_ident()}


def test_sigint_raises_keyboard_interrupt_within_a_second(x: np.ndarray) -> None:
    # A shell or test runner may have left SIGINT ignored; Python's default
    # handler is what turns it into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            zcore_fast.score(x, n_sample=10**10)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - start < 1.5


def test_library_never_prints(x: np.ndarray, capfd) -> None:
    zcore_fast.score(x, **FAST)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_gil_is_released_while_scoring() -> None:
    a, b = clustered(20_000, 16, seed=1), clustered(20_000, 16, seed=2)
    spans: dict[str, tuple[float, float]] = {}

    def run(name: str, arr: np.ndarray) -> None:
        start = time.perf_counter()
        zcore_fast.score(arr, n_sample=3000, threads=1)
        spans[name] = (start, time.perf_counter())

    threads = [threading.Thread(target=run, args=(n, arr)) for n, arr in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    ticks = 0
    while any(t.is_alive() for t in threads):
        ticks += 1  # pure-Python work: only runs if the GIL is free
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert max(a0, b0) < min(a1, b1), "the two scoring calls did not overlap"
    assert ticks > 10_000


def test_tiny_and_degenerate_pools_work() -> None:
    two = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert zcore_fast.score(two, n_sample=100).shape == (2,)
    dupes = np.ones((50, 3), dtype=np.float32)
    dupes[::7] = 2.0
    s = zcore_fast.score(dupes, n_sample=500)  # N <= redund_nn, duplicates, constant
    assert np.all((s >= 0) & (s <= 1))


def test_report_halves_sum_to_the_full_run_and_measure_convergence(x: np.ndarray) -> None:
    report = zcore_fast.score_report(x, **FAST)
    assert np.array_equal(report.scores, zcore_fast.score(x, **FAST))
    assert report.n_sample == 2000 and report.parameters["redund_nn"] == 50
    # Different halves of a real run agree somewhat but not perfectly.
    assert 0.0 < report.convergence < 1.0
    # More samples: the halves agree better.
    longer = zcore_fast.score_report(x, n_sample=40_000, redund_nn=50)
    assert longer.convergence > report.convergence


def test_spearman_matches_a_direct_rank_computation() -> None:
    from zcore_fast.methods.zcore import spearman

    rng = np.random.default_rng(5)
    a = rng.integers(0, 6, 300).astype(float)  # many ties
    b = a + rng.normal(size=300)

    def avg_ranks(v: np.ndarray) -> np.ndarray:
        return np.array([(v < t).sum() + ((v == t).sum() - 1) / 2 for t in v])

    expect = np.corrcoef(avg_ranks(a), avg_ranks(b))[0, 1]
    assert spearman(a, b) == pytest.approx(expect, abs=1e-12)
    assert np.isnan(spearman(np.zeros(5), b[:5]))


def test_auto_sample_count_grows_with_the_pool() -> None:
    assert zcore_fast.auto_n_sample(50_000) == 1_000_000
    assert zcore_fast.auto_n_sample(10**8) == 10**7
    assert zcore_fast.auto_n_sample(3, redund_nn=1000) == 1_000_000
    tiny = clustered(300, 8, seed=4)
    report = zcore_fast.score_report(tiny, n_sample="auto", redund_nn=20, threads=2)
    assert report.n_sample == 1_000_000 and report.scores.shape == (300,)


def test_band_search_and_passes_give_the_same_bits(x: np.ndarray) -> None:
    """The engine's exact search methods, forced through the binding, agree
    bit for bit (pools of 100,000+ rows use band search by default, with
    pair indexes where many samples share a pair of dimensions)."""
    from zcore_fast import _native

    args = dict(n_sample=3000, sample_dim=2, redund_nn=50, redund_exp=4.0, rand_init=True, seed=2)
    methods = ("brute", "band", "pair", "auto")
    by = {s: _native.score([x], threads=2, search=s, **args) for s in methods}
    for name in methods[1:]:
        for a, b in zip(by["brute"], by[name]):
            assert a.tobytes() == b.tobytes(), name
    with pytest.raises(ValueError, match="search must be"):
        _native.score([x], threads=1, search="fast", **args)


def test_large_float16_pool_is_scored_in_place_like_its_float32_copy() -> None:
    """A Fortran-order float16 pool large enough to be read in place (band
    search over float16 columns) scores exactly like its float32 widening
    read through the brute-force passes."""
    from zcore_fast import _native

    rng = np.random.default_rng(7)
    half = np.asfortranarray(rng.standard_normal((140_000, 3)).astype(np.float16))
    args = dict(n_sample=400, sample_dim=2, redund_nn=30, redund_exp=4.0, rand_init=True, seed=1)
    in_place = _native.score([half], threads=2, **args)
    widened = _native.score(
        [np.ascontiguousarray(half, dtype=np.float32)], threads=2, search="brute", **args
    )
    for a, b in zip(in_place, widened):
        assert a.tobytes() == b.tobytes()
