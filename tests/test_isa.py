"""Instruction-set levels: every level this CPU runs gives the same bits, the
ZCORE_FAST_ISA override picks one (or fails clearly), and reports say which ran."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zcore_fast
from reference import clustered
from zcore_fast import _native
from zcore_fast.cli import main

LEVELS = _native.isa_levels()
FAST = {"n_sample": 3000, "redund_nn": 40, "backend": "cpu"}


def test_levels_are_listed_lowest_first() -> None:
    assert LEVELS[0] == "portable"
    assert set(LEVELS) <= {"portable", "avx2", "avx512"}
    assert _native.isa_level() == LEVELS[-1]  # the best one by default


@pytest.mark.parametrize("search", ["brute", "band", "pair"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_level_gives_the_same_bits(monkeypatch, search: str, dtype: type) -> None:
    x = clustered(3000, 12, seed=5).astype(dtype)
    x = np.asfortranarray(x)  # float16 columns are then read in place
    runs = {}
    for level in LEVELS:
        monkeypatch.setenv("ZCORE_FAST_ISA", level)
        assert _native.isa_level() == level
        scores, first, second = _native.score(
            [x],
            n_sample=2000,
            sample_dim=2,
            redund_nn=40,
            redund_exp=4.0,
            rand_init=True,
            seed=7,
            threads=2,
            search=search,
        )
        runs[level] = (scores.tobytes(), first.tobytes(), second.tobytes())
    assert len(set(runs.values())) == 1, f"levels disagree: {sorted(runs)}"


@pytest.mark.parametrize("sample_dim", [1, 3])
def test_other_subspace_sizes_agree_across_levels(monkeypatch, sample_dim: int) -> None:
    x = clustered(800, 6, seed=2)
    seen = set()
    for level in LEVELS:
        monkeypatch.setenv("ZCORE_FAST_ISA", level)
        seen.add(zcore_fast.score(x, sample_dim=sample_dim, **FAST).tobytes())
    assert len(seen) == 1


def test_report_and_json_name_the_level(monkeypatch, tmp_path, capsys) -> None:
    x = clustered(400, 8, seed=1)
    monkeypatch.setenv("ZCORE_FAST_ISA", "portable")
    report = zcore_fast.score_report(x, **FAST)
    assert report.isa == "portable" and report.parameters["isa"] == "portable"
    monkeypatch.delenv("ZCORE_FAST_ISA")
    assert zcore_fast.score_report(x, **FAST).isa == LEVELS[-1]
    path = tmp_path / "emb.npy"
    np.save(path, x)
    out = tmp_path / "keep.npy"
    argv = ["select", str(path), "--budget", "0.1", "-o", str(out), "--json"]
    assert main([*argv, "--n-sample", "2000", "--redund-nn", "40", "--backend", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["isa"] == LEVELS[-1]
    monkeypatch.setenv("ZCORE_FAST_ISA", "portable")
    assert main([*argv[:-1], "--n-sample", "2000", "--redund-nn", "40", "--backend", "cpu"]) == 0
    assert "(portable kernels)" in capsys.readouterr().out


def test_unknown_level_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("ZCORE_FAST_ISA", "sse9")
    with pytest.raises(ValueError, match=r"ZCORE_FAST_ISA=.sse9. is not a known level"):
        zcore_fast.score(clustered(100, 4, seed=0), **FAST)


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_a_level_this_cpu_lacks_is_refused(monkeypatch, tmp_path, capsys, level: str) -> None:
    if level in LEVELS:
        pytest.skip(f"this CPU runs {level}")
    monkeypatch.setenv("ZCORE_FAST_ISA", level)
    with pytest.raises(ValueError, match=f"cannot run the {level} kernels"):
        zcore_fast.score(clustered(100, 4, seed=0), **FAST)
    path = tmp_path / "emb.npy"
    np.save(path, clustered(100, 4, seed=0))
    out = tmp_path / "keep.npy"
    code = main(["select", str(path), "--budget", "0.1", "-o", str(out), "--backend", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1 and "ZCORE_FAST_ISA" in err[0]
    assert not out.exists()
