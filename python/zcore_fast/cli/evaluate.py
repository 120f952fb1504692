"""`zcore-fast evaluate` and `zcore-fast plot`: coreset quality on the command line.

`main.py` registers these subcommands and routes to `run_quality` and
`report_quality`; everything they do lives here. Usage errors (bad flag
values) exit 2, problems with the data or files exit 1, as for `select`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zcore_fast.cli import usage
from zcore_fast.cli.usage import UsageError, sample_count
from zcore_fast.evaluation.harness import PRUNE_RATES
from zcore_fast.methods.zcore import DEFAULTS

#: The subcommands this module implements.
QUALITY_COMMANDS = ("evaluate", "plot")

_ZCORE_FLAGS = ("n_sample", "sample_dim", "redund_nn", "redund_exp", "rand_init")


def _usage(message: str) -> Exception:
    return UsageError(message)


def add_quality_commands(sub: Any) -> None:
    """Adds the `evaluate` and `plot` subparsers to `sub` (from add_subparsers)."""
    ev = sub.add_parser(
        "evaluate",
        help="accuracy of a linear probe trained on each method's coreset, per budget",
        description=(
            "For each method, prune rate and seed: select a coreset without labels, train a "
            "linear probe (L2 logistic regression, regularisation chosen on a validation split "
            "of the coreset) on it, and measure accuracy on a test set. Writes results.csv "
            "(mean and spread over seeds), runs.csv (every run) and accuracy.png to the "
            "output directory."
        ),
    )
    ev.add_argument("embeddings", nargs="+", help=".npy files (N x D), concatenated along D")
    ev.add_argument("--labels", required=True, help="class labels .npy, one per row")
    ev.add_argument("--test", nargs="+", metavar="EMB_TEST", help="test embeddings .npy")
    ev.add_argument("--test-labels", help="test labels .npy (with --test)")
    ev.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="without --test: stratified share of rows held out for testing (default 0.2)",
    )
    ev.add_argument(
        "--split-seed",
        type=usage.non_negative_int,
        default=0,
        help="seed of the held-out split (default 0)",
    )
    ev.add_argument(
        "--methods",
        default="zcore,random",
        help="comma-separated methods, or 'all' (default zcore,random)",
    )
    ev.add_argument(
        "--prune-rates",
        default=None,
        help="comma-separated fractions in (0, 1) of the pool to drop (default "
        f"{','.join(f'{p:g}' for p in PRUNE_RATES)}, or none when --budgets is given)",
    )
    ev.add_argument(
        "--budgets",
        default=None,
        help="comma-separated coreset sizes as row counts, e.g. 10,20,50,100,500",
    )
    ev.add_argument(
        "--probe",
        default="linear",
        help="comma-separated probes trained on each coreset: linear, knn (default linear)",
    )
    ev.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    ev.add_argument("-o", "--output", required=True, help="report directory (created if missing)")
    ev.add_argument("--no-plot", action="store_true", help="do not draw accuracy.png")
    ev.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="an option for one method, e.g. elfs.beta=0.3 (repeatable)",
    )
    z = ev.add_argument_group(
        "ZCore parameters (default: the paper's; scored once per seed and reused for every "
        "prune rate)"
    )
    z.add_argument(
        "--n-sample",
        type=sample_count,
        help=f'a count or "auto" (default {DEFAULTS["n_sample"]:,})',
    )
    z.add_argument(
        "--sample-dim", type=usage.positive_int, help=f"default {DEFAULTS['sample_dim']}"
    )
    z.add_argument("--redund-nn", type=usage.positive_int, help=f"default {DEFAULTS['redund_nn']}")
    z.add_argument(
        "--redund-exp", type=usage.non_negative_float, help=f"default {DEFAULTS['redund_exp']}"
    )
    z.add_argument(
        "--no-rand-init",
        dest="rand_init",
        action="store_const",
        const=False,
        help="no U(0,1) tie-breaking noise",
    )
    ev.add_argument("--threads", type=usage.positive_int, default=None, help="default: all cores")
    _add_output_flags(ev)

    pl = sub.add_parser(
        "plot",
        help="draw the score map: the pool in 2-D coloured by score, the coreset ringed",
        description=(
            "Projects the pool to 2-D (UMAP when umap-learn is installed, else PCA), colours "
            "points by score and rings the coreset. Pools larger than --max-points are drawn "
            "from a seeded random subsample."
        ),
    )
    pl.add_argument("embeddings", nargs="+", help=".npy files (N x D), concatenated along D")
    pl.add_argument("--scores", required=True, help="scores .npy (e.g. from `zcore-fast score`)")
    pl.add_argument("--coreset", help="selected indices: .npy, .txt or .csv from `select`")
    pl.add_argument("-o", "--output", required=True, help="the PNG to write")
    pl.add_argument("--max-points", type=int, default=20_000, help="default %(default)s")
    pl.add_argument("--projection", choices=("auto", "pca", "umap"), default="auto")
    pl.add_argument(
        "--seed", type=usage.non_negative_int, default=0, help="subsample seed (default 0)"
    )
    pl.add_argument(
        "--color-by",
        choices=("rank", "score"),
        default="rank",
        help="colour by score percentile (default; ZCore scores are skewed) or raw score",
    )
    pl.add_argument("--title", help="figure title")
    _add_output_flags(pl)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("output")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress or table")
    o.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    o.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    """Runs `evaluate` or `plot`; returns the summary that `report_quality` prints."""
    return _run_evaluate(args) if args.command == "evaluate" else _run_plot(args)


def report_quality(summary: dict[str, Any], args: argparse.Namespace) -> None:
    """Prints the summary: JSON with --json, else a table (evaluate) or a line."""
    if args.json:
        print(json.dumps(summary))
    elif args.quiet:
        return
    elif args.command == "evaluate":
        from zcore_fast.cli.table import print_results

        print_results(summary)
    else:
        print(
            f"drew {summary['shown']:,} of {summary['n']:,} rows ({summary['projection']}) "
            f"-> {summary['output']}"
        )


def _run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from zcore_fast.evaluation import evaluate, plot_accuracy, require_matplotlib
    from zcore_fast.methods import METHODS

    methods = _parse_methods(args.methods, METHODS)
    budgets = _parse_budgets(args.budgets)
    if args.prune_rates is None:
        rates = [] if budgets else list(PRUNE_RATES)
    else:
        rates = _parse_rates(args.prune_rates)
    probes = _parse_probes(args.probe)
    if args.seeds < 1:
        raise _usage(f"--seeds must be at least 1, got {args.seeds}")
    if (args.test is None) != (args.test_labels is None):
        raise _usage("give --test and --test-labels together, or neither")
    if not 0.0 < args.test_fraction < 1.0:
        raise _usage(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    options = _parse_options(args, methods)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise _usage(f"-o {out} is a file; give a directory for the report")
    if not args.no_plot:
        try:
            require_matplotlib()
        except ImportError as e:  # fail before a long run, not after it
            raise ImportError(f"{e} (or pass --no-plot)") from None
    # Before the run, not after it: an unwritable place should fail in a second.
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _Progress(enabled=not args.quiet and not args.json and sys.stderr.isatty()) as bar:
        results = evaluate(
            args.embeddings,
            args.labels,
            test_embeddings=args.test,
            test_labels=args.test_labels,
            methods=methods,
            prune_rates=rates,
            budgets=budgets,
            probes=probes,
            seeds=args.seeds,
            method_options=options,
            test_fraction=args.test_fraction,
            split_seed=args.split_seed,
            threads=args.threads,
            progress=bar.update,
        )
    files = {"results": out / "results.csv", "runs": out / "runs.csv"}
    # Each file is replaced atomically, the report as a whole is not: the
    # slow plot goes first, so a kill can mix an earlier run's files with
    # this one's only within the milliseconds between the renames.
    if not args.no_plot:
        files["accuracy_plot"] = out / "accuracy.png"
        plot_accuracy(results, files["accuracy_plot"])
    results.to_csv(files["results"])
    results.runs_to_csv(files["runs"])
    summary = results.to_dict()
    summary.update(
        seconds=round(time.perf_counter() - start, 3),
        files={k: str(v) for k, v in files.items()},
    )
    return summary


def _run_plot(args: argparse.Namespace) -> dict[str, Any]:
    from zcore_fast.evaluation import plot_score_map
    from zcore_fast.evaluation.data import row_count

    for path in (p for p in args.embeddings if Path(p).is_dir()):
        raise _usage(
            f"{path} is a directory; plot reads embeddings .npy files: zcore-fast plot "
            "EMB.npy --scores SCORES.npy -o map.png (an evaluate report's accuracy.png is "
            "drawn by evaluate)"
        )
    if Path(args.output).suffix.lower() != ".png":
        raise _usage(f"{args.output}: the score map is written as .png; give a path ending in .png")
    if args.max_points < 3:
        raise _usage(f"--max-points must be at least 3, got {args.max_points}")
    parent = Path(args.output).parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{args.output}: directory {parent} does not exist; create it")
    proj = plot_score_map(
        args.embeddings,
        args.scores,
        args.output,
        coreset=args.coreset,
        max_points=args.max_points,
        projection=args.projection,
        seed=args.seed,
        color_by=args.color_by,
        title=args.title,
    )
    return {
        "n": row_count(args.embeddings),
        "shown": int(proj.rows.size),
        "projection": proj.method,
        "output": str(args.output),
    }


def _parse_methods(text: str, known: tuple[str, ...]) -> list[str]:
    if text.strip() == "all":
        return list(known)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in known]
    if not methods or unknown:
        bad = f"unknown method {', '.join(unknown)}; " if unknown else "no methods given; "
        raise _usage(f"--methods: {bad}choose from {', '.join(known)} (or 'all')")
    return methods


def _parse_budgets(text: str | None) -> list[int]:
    if text is None:
        return []
    out = []
    for part in text.split(","):
        try:
            b = int(part)
        except ValueError:
            raise _usage(f"--budgets: {part.strip()!r} is not a whole number of rows") from None
        if b < 1:
            raise _usage(f"--budgets: {b} is not a row count (at least 1)")
        out.append(b)
    return out


def _parse_probes(text: str) -> list[str]:
    from zcore_fast.evaluation.harness import PROBES

    probes = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in probes if p not in PROBES]
    if not probes or unknown:
        raise _usage(f"--probe: choose from {', '.join(PROBES)} (comma-separated)")
    return probes


def _parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            p = float(part)
        except ValueError:
            raise _usage(f"--prune-rates: {part.strip()!r} is not a number") from None
        if not 0.0 < p < 1.0:
            raise _usage(
                f"--prune-rates: {p:g} is outside (0, 1); a prune rate is the fraction of the "
                "pool dropped (0.9 keeps 10%)"
            )
        rates.append(p)
    return rates


def _parse_options(args: argparse.Namespace, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per-method options from the ZCore flags and --option METHOD.KEY=VALUE."""
    options: dict[str, dict[str, Any]] = {}
    zcore = {k: getattr(args, k) for k in _ZCORE_FLAGS if getattr(args, k) is not None}
    if zcore and "zcore" not in methods and "ccs" not in methods:
        raise _usage(
            "ZCore flags (--n-sample, ...) given but neither zcore nor ccs is in --methods"
        )
    if zcore and "zcore" in methods:
        options["zcore"] = dict(zcore)
    for item in args.option:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise _usage(f"--option {item!r}: expected METHOD.KEY=VALUE, e.g. elfs.beta=0.3")
        if method not in methods:
            raise _usage(f"--option {item!r}: {method} is not in --methods")
        options.setdefault(method, {})[name.replace("-", "_")] = _value(value)
    from zcore_fast.methods import method_options

    for method, opts in options.items():
        known = method_options(method, opts.get("score", "zcore"))
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise _usage(
                f"--option: {method} has no option {', '.join(unknown)}; it takes "
                f"{', '.join(known) or 'none'}"
            )
    if zcore and "ccs" in methods and options.get("ccs", {}).get("score", "zcore") == "zcore":
        # CCS stratifies ZCore scores by default: the ZCore flags configure
        # those too (and the scores are then computed once for both).
        options["ccs"] = {**zcore, **options.get("ccs", {})}
    return options


def _value(text: str) -> Any:
    """An option value: int, float, true/false/none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Progress:
    """A rich progress bar on stderr: steps done, the stage running, elapsed."""

    def __init__(self, *, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("", total=1)

    def update(self, done: int, total: int, stage: str) -> None:
        """The evaluate progress callback."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, description=stage)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
