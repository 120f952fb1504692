"""The bad-input matrix of docs/errors.md, checked against the real CLI.

Every row of the table in docs/errors.md is a test here: its test id names
an entry of `CASES` (the command line and the inputs it needs), and the row
gives the exact one-line message the CLI prints last on stderr and the exit
status. The rows are parsed from the document itself, so the document
cannot drift from what the CLI does: change a message, and the row must
change with it (`<n>` and `<hex>` in a message stand for byte counts and
hashes). Rows run in-process through `zcore_fast.cli.main` (matrix_helpers.py
builds their inputs and runs them), except those that truncate a file while
a run reads it (a regression there could kill the process with SIGBUS) and
those under a file-size limit, which run in a child process.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from matrix_helpers import Case, make_inputs, run_case

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
#: Columns of the table: command, input, message, exit status, test id.
COLUMNS = 5
#: ZCore flags that keep a run that gets as far as scoring short.
Z = "--n-sample 200 --redund-nn 5 -q"
#: The evaluate flags of rows that must fail before any probe is trained.
EV = "-o report --no-plot -q"
EMBED = "--batch-size 2 --workers 0 --device cpu -q"
TV = ("torch", "torchvision")


def _c(command: str, needs: tuple[str, ...] = (), truncate: tuple[str, str] | None = None) -> Case:
    return Case(tuple(shlex.split(command)), needs, truncate)


def _env(command: str, **env: str) -> Case:
    return Case(tuple(shlex.split(command)), env=tuple(env.items()))


def _full(command: str, fsize: int, needs: tuple[str, ...] = ()) -> Case:
    return Case(tuple(shlex.split(command)), needs, fsize=fsize)


def _sel(args: str) -> Case:
    return _c(f"select {args} -o out.npy {Z}")


def _method(args: str) -> Case:
    return _c(f"select good.npy --budget 5 -o out.npy -q --method {args}")


CASES: dict[str, Case] = {
    # select: malformed and hostile .npy files (the Rust engine reads them)
    "select-v1-header": _sel("v1_header.npy --budget 5"),
    "select-v2-header": _sel("v2_header.npy --budget 5"),
    "select-v3-header": _sel("v3_header.npy --budget 5"),
    "select-big-endian": _sel("big_endian.npy --budget 5"),
    "select-object-dtype": _sel("object.npy --budget 5"),
    "select-int-dtype": _sel("int64.npy --budget 5"),
    "select-0d": _sel("d0.npy --budget 5"),
    "select-1d": _sel("d1.npy --budget 5"),
    "select-3d": _sel("d3.npy --budget 5"),
    "select-zero-rows": _sel("rows0.npy --budget 5"),
    "select-zero-columns": _sel("cols0.npy --budget 5"),
    "select-truncated": _sel("truncated.npy --budget 5"),
    "select-shape-overflow": _sel("overflow.npy --budget 5"),
    "select-huge-header": _sel("huge_header.npy --budget 5"),
    "select-not-npy": _sel("text.npy --budget 5"),
    "select-empty-file": _sel("empty.npy --budget 5"),
    "select-missing-file": _sel("missing.npy --budget 5"),
    "select-directory": _sel("folder.npy --budget 5"),
    "select-f16-nan": _sel("f16_nan.npy --budget 5"),
    "select-f16-inf": _sel("f16_inf.npy --budget 5"),
    "select-f32-nan-inf": _sel("f32_nan_inf.npy --budget 5"),
    "select-truncated-before-scoring": _c(
        f"select victim.npy --budget 5 -o out.npy {Z}", truncate=("victim.npy", "engine")
    ),
    # select: the NumPy methods read files themselves, with the same refusals
    "select-moderate-v1-header": _c("select v1_header.npy --budget 5 -o out.npy --method moderate"),
    "select-moderate-f16-nan": _c("select f16_nan.npy --budget 5 -o out.npy --method moderate"),
    "select-moderate-truncated-while-reading": _c(
        "select victim.npy --budget 5 -o out.npy --method moderate", truncate=("victim.npy", "rows")
    ),
    # select: option values
    "select-budget-0": _sel("good.npy --budget 0"),
    "select-budget-negative": _sel("good.npy --budget -3"),
    "select-budget-above-n": _sel("good.npy --budget 41"),
    "select-budget-1.5": _sel("good.npy --budget 1.5"),
    "select-budget-1.5x": _sel("good.npy --budget 1.5x"),
    "select-budget-abc": _sel("good.npy --budget abc"),
    "select-prune-rate-1": _sel("good.npy --prune-rate 1"),
    "select-prune-rate-negative": _sel("good.npy --prune-rate -0.1"),
    "select-seed-negative": _sel("good.npy --budget 5 --seed -1"),
    "select-threads-0": _sel("good.npy --budget 5 --threads 0"),
    "select-method-unknown": _sel("good.npy --budget 5 --method kcenter"),
    "select-option-of-other-method": _method("moderate --beta 0.3"),
    "select-ray-with-other-method": _method("moderate --backend ray --workers 2"),
    "select-clusters-0": _method("moderate --clusters 0"),
    "select-clusters-above-n": _method("moderate --clusters 41"),
    "select-mis-ratio-out-of-range": _method("ccs --mis-ratio 1.5"),
    "select-scores-out-random": _method("random --scores-out s.npy"),
    # select: labels (used by moderate/elfs and ccs over a class score)
    "select-ccs-labels-float": _method("ccs --ccs-score moderate --labels labels_float.npy"),
    "select-ccs-labels-strings-short": _method(
        "ccs --ccs-score moderate --labels labels_str_short.npy"
    ),
    "select-ccs-labels-2d": _method("ccs --ccs-score moderate --labels labels_2d.npy"),
    "select-ccs-labels-object": _method("ccs --ccs-score moderate --labels labels_object.npy"),
    "select-ccs-zcore-labels": _method("ccs --labels labels.npy"),
    "select-auto-labels": _method("auto --labels labels.npy"),
    "select-moderate-labels-short": _method("moderate --labels labels_short.npy"),
    # select: outputs and the cache directory
    "select-output-suffix": _c(f"select good.npy --budget 5 -o out.pdf {Z}"),
    "select-output-is-input": _c(f"select good.npy --budget 5 -o good.npy {Z}"),
    "select-output-folder-missing": _c(f"select good.npy --budget 5 -o nowhere/out.npy {Z}"),
    "select-cache-dir-is-file": _sel("good.npy --budget 5 --cache always --cache-dir a_file"),
    "select-cache-env-is-file": _env(
        f"select good.npy --budget 5 -o out.npy {Z} --cache always", ZCORE_FAST_CACHE_DIR="a_file"
    ),
    "select-no-input": _c(f"select --budget 5 -o out.npy {Z}"),
    # score
    "score-output-suffix": _c(f"score good.npy -o scores.csv {Z}"),
    "score-missing-file": _c(f"score missing.npy -o s.npy {Z}"),
    "score-n-sample-0": _c("score good.npy -o s.npy --n-sample 0"),
    "score-redund-exp-nan": _c(f"score good.npy -o s.npy {Z} --redund-exp nan"),
    "score-sample-dim-above-d": _c(f"score good.npy -o s.npy {Z} --sample-dim 9"),
    "score-backend-unknown": _c(f"score good.npy -o s.npy {Z} --backend tpu"),
    "score-rows-differ": _c(f"score good.npy short.npy -o s.npy {Z}"),
    "score-cache-dir-under-file": _c(
        f"score good.npy -o s.npy {Z} --cache always --cache-dir a_file/sub"
    ),
    "score-cache-file-size-limit": _full(
        f"score big.npy -o s.npy {Z} --cache always --cache-dir cache", fsize=16 << 10
    ),
    # cache
    "cache-stale-with-show": _c("cache show --stale --cache-dir cache"),
    "cache-unknown-action": _c("cache list --cache-dir cache"),
    "cache-dir-is-file": _c("cache --cache-dir a_file"),
    "cache-env-is-file": _env("cache show", ZCORE_FAST_CACHE_DIR="a_file"),
    # evaluate: labels
    "evaluate-labels-float": _c(f"evaluate good.npy --labels labels_float.npy {EV}"),
    "evaluate-labels-2d": _c(f"evaluate good.npy --labels labels_2d.npy {EV}"),
    "evaluate-labels-short": _c(f"evaluate good.npy --labels labels_short.npy {EV}"),
    "evaluate-labels-object": _c(f"evaluate good.npy --labels labels_object.npy {EV}"),
    "evaluate-labels-missing": _c(f"evaluate good.npy --labels missing.npy {EV}"),
    "evaluate-labels-not-npy": _c(f"evaluate good.npy --labels text.npy {EV}"),
    # evaluate: option values
    "evaluate-budgets-junk": _c(f"evaluate good.npy --labels labels.npy {EV} --budgets 10,ten"),
    "evaluate-budgets-0": _c(f"evaluate good.npy --labels labels.npy {EV} --budgets 0"),
    "evaluate-budgets-above-train": _c(
        f"evaluate good.npy --labels labels.npy {EV} --budgets 100 --methods random"
    ),
    "evaluate-probe-junk": _c(f"evaluate good.npy --labels labels.npy {EV} --probe linear,svm"),
    "evaluate-prune-rates-out": _c(
        f"evaluate good.npy --labels labels.npy {EV} --prune-rates 0.5,1.2"
    ),
    "evaluate-prune-rates-junk": _c(
        f"evaluate good.npy --labels labels.npy {EV} --prune-rates half"
    ),
    "evaluate-seeds-0": _c(f"evaluate good.npy --labels labels.npy {EV} --seeds 0"),
    "evaluate-methods-unknown": _c(
        f"evaluate good.npy --labels labels.npy {EV} --methods zcore,kcenter"
    ),
    "evaluate-option-unknown": _c(
        f"evaluate good.npy --labels labels.npy {EV} --methods random --option random.k=3"
    ),
    "evaluate-option-junk": _c(
        f"evaluate good.npy --labels labels.npy {EV} --methods random --option k"
    ),
    "evaluate-split-seed-negative": _c(
        f"evaluate good.npy --labels labels.npy {EV} --split-seed -1"
    ),
    "evaluate-test-without-labels": _c(
        f"evaluate good.npy --labels labels.npy {EV} --test good.npy"
    ),
    "evaluate-output-is-file": _c("evaluate good.npy --labels labels.npy -o a_file --no-plot"),
    # evaluate: embeddings
    "evaluate-not-npy": _c(f"evaluate text.npy --labels labels.npy {EV}"),
    "evaluate-empty-file": _c(f"evaluate empty.npy --labels labels.npy {EV}"),
    "evaluate-v2-header": _c(f"evaluate v2_header.npy --labels labels.npy {EV}"),
    "evaluate-f32-nan-inf": _c(
        f"evaluate f32_nan_inf.npy --labels labels.npy {EV} --methods random --budgets 5"
    ),
    # plot
    "plot-directory": _c("plot report_like --scores scores.npy -o map.png"),
    "plot-output-suffix": _c("plot good.npy --scores scores.npy -o map.pdf"),
    "plot-output-folder-missing": _c("plot good.npy --scores scores.npy -o nowhere/map.png"),
    "plot-scores-wrong-length": _c("plot good.npy --scores labels_short.npy -o map.png"),
    "plot-scores-strings": _c("plot good.npy --scores labels_str.npy -o map.png"),
    "plot-scores-missing": _c("plot good.npy --scores missing.npy -o map.png"),
    "plot-max-points-2": _c("plot good.npy --scores scores.npy -o map.png --max-points 2"),
    "plot-seed-negative": _c("plot good.npy --scores scores.npy -o map.png --seed -1"),
    "plot-projection-unknown": _c("plot good.npy --scores scores.npy -o map.png --projection tsne"),
    "plot-coreset-format": _c("plot good.npy --scores scores.npy -o map.png --coreset keep.pdf"),
    "plot-coreset-out-of-range": _c(
        "plot good.npy --scores scores.npy -o map.png --coreset keep_big.txt"
    ),
    "plot-0d": _c("plot d0.npy --scores scores.npy -o map.png"),
    "plot-empty-file": _c("plot empty.npy --scores scores.npy -o map.png"),
    "plot-zero-columns": _c("plot cols0.npy --scores scores.npy -o map.png"),
    # embed
    "embed-empty-folder": _c(f"embed no_images -o emb.npy {EMBED} --model torchvision:resnet18"),
    "embed-missing-source": _c(
        f"embed missing_dir -o emb.npy {EMBED} --model torchvision:resnet18"
    ),
    "embed-no-model": _c(f"embed images -o emb.npy {EMBED}"),
    "embed-unknown-spec": _c(f"embed images -o emb.npy {EMBED} --model resnet18"),
    "embed-unknown-torchvision-model": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet1000 --weights random",
        needs=TV,
    ),
    "embed-unknown-factory-module": _c(
        f"embed images -o emb.npy {EMBED} --model nosuchpkg.models:build"
    ),
    "embed-no-weights": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet18", needs=TV
    ),
    "embed-weights-file-missing": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet18 --weights missing.pth",
        needs=TV,
    ),
    "embed-weights-before-model": _c(f"embed images -o emb.npy {EMBED} --weights random"),
    "embed-checkpoint-every-0": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet18 --checkpoint-every 0"
    ),
    "embed-file-size-limit": _full(
        f"embed images -o emb.npy {EMBED} --model torch.nn:Flatten", fsize=64 << 10, needs=TV
    ),
    "embed-batch-size-0": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet18 --batch-size 0"
    ),
    "embed-output-suffix": _c(
        f"embed images -o emb.txt {EMBED} --model torchvision:resnet18 --weights random", needs=TV
    ),
    "embed-device-unknown": _c(
        f"embed images -o emb.npy {EMBED} --model torchvision:resnet18 --weights random "
        "--device tpu",
        needs=TV,
    ),
}


# ------------------------------------------------------------- the document


@dataclass(frozen=True)
class Row:
    command: str
    input: str
    message: str
    status: int
    test_id: str


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row; `\\|` is a literal bar."""
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _code(cell: str) -> str:
    """The text of a code span: `x` or `` x `` (for text with backticks)."""
    m = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
    if not m:
        raise ValueError(f"expected a code span, got {cell!r}")
    return m.group(2)


def doc_rows(text: str | None = None) -> list[Row]:
    """The rows of the matrix table in docs/errors.md."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue  # prose, the header and the separator line
        cells = _cells(line)
        if len(cells) != COLUMNS:
            raise ValueError(f"docs/errors.md: expected {COLUMNS} cells in {line!r}")
        command, what, message, status, test_id = cells
        rows.append(Row(_code(command), what, _code(message), int(status), _code(test_id)))
    return rows


ROWS = doc_rows()


def _pattern(message: str) -> str:
    """The message as a regular expression: in a message, `<n>` stands for
    a byte count and `<hex>` for a hash, which differ from run to run."""
    escaped = re.escape(message)
    return escaped.replace(re.escape("<n>"), r"[\d,]+").replace(re.escape("<hex>"), "[0-9a-f]+")


def test_document_and_cases_agree() -> None:
    ids = [r.test_id for r in ROWS]
    assert len(ids) == len(set(ids)), "a test id appears twice in docs/errors.md"
    assert set(ids) == set(CASES), (
        f"rows without a case: {sorted(set(ids) - set(CASES))}; "
        f"cases without a row: {sorted(set(CASES) - set(ids))}"
    )
    for row in ROWS:
        assert CASES[row.test_id].argv[0] == row.command, row.test_id
        assert row.status in (1, 2), row.test_id
    per_command = {c: sum(r.command == c for r in ROWS) for c in {r.command for r in ROWS}}
    assert len(ROWS) >= 36 and len(per_command) == 6, per_command
    assert min(per_command.values()) >= 3, per_command


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("matrix")
    make_inputs(path)
    return path


@pytest.mark.parametrize("row", ROWS, ids=[r.test_id for r in ROWS])
def test_row(row: Row, root: Path) -> None:
    case = CASES[row.test_id]
    for module in case.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (pip install '.[test]')")
    if case.truncate is not None:  # the run truncates it: a fresh copy each time
        np.save(
            root / case.truncate[0],
            np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32),
        )
    status, err = run_case(case, root)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines, f"nothing on stderr (exit {status})"
    assert re.fullmatch(_pattern(row.message), lines[-1]), (row.message, err)
    assert status == row.status, err
    if status == 1:  # a runtime error is one line
        assert len(lines) == 1, err
    else:  # a usage error: the usage, then the message
        assert lines[0].startswith("usage: zcore-fast"), err
