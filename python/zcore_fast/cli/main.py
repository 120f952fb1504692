"""`zcore-fast`: the parser, the `select` and `score` commands, and the
routing to the other command families (cache.py, embed.py, evaluate.py).

Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from zcore_fast import _native
from zcore_fast.backends import BACKENDS
from zcore_fast.cli.cache import (
    add_cache_command,
    add_cache_flags,
    check_cache_dir,
    run_cache_command,
)
from zcore_fast.cli.embed import add_embed_command, run_embed_command
from zcore_fast.cli.evaluate import (
    QUALITY_COMMANDS,
    add_quality_commands,
    report_quality,
    run_quality,
)
from zcore_fast.cli.methods import add_method_flags, options_from_args, run_select
from zcore_fast.cli.usage import (
    UsageError,
    non_negative_float,
    non_negative_int,
    positive_int,
    sample_count,
)
from zcore_fast.integrations.tables import Resolved, is_table, needs_resolving, resolve
from zcore_fast.io import (
    as_sources,
    check_output_path,
    example_embeddings,
    save_array,
    save_selection,
)
from zcore_fast.methods.zcore import DEFAULTS, SHARDINGS, score_report
from zcore_fast.npyfile import read_header
from zcore_fast.progress import ProgressBar
from zcore_fast.select import budget_from_prune_rate, keep_count, select
from zcore_fast.shards import describe_inputs, input_names, is_sharded, pool_shape, row_inputs


def _budget(text: str) -> float | int:
    """A budget flag: '0.1' is a fraction, '500' is a count."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _add_scoring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "embeddings",
        nargs="*",
        help=".npy files (N x D each), concatenated along D; a folder or quoted glob of .npy "
        "shards is one input, its shards concatenated along rows; or one Parquet file or "
        "folder of parts (see --column)",
    )
    p.add_argument(
        "--example",
        action="store_true",
        help="score the built-in example pool (5,000 x 64) instead of files",
    )
    g = p.add_argument_group("ZCore parameters (paper names)")
    g.add_argument(
        "--n-sample",
        type=sample_count,
        default=DEFAULTS["n_sample"],
        help='random subspace samples, or "auto": chosen from the pool size (default %(default)s)',
    )
    g.add_argument(
        "--sample-dim",
        type=positive_int,
        default=DEFAULTS["sample_dim"],
        help="dimensions per subspace (default %(default)s)",
    )
    g.add_argument(
        "--redund-nn",
        type=positive_int,
        default=DEFAULTS["redund_nn"],
        help="neighbours penalised per sample (default %(default)s)",
    )
    g.add_argument(
        "--redund-exp",
        type=non_negative_float,
        default=DEFAULTS["redund_exp"],
        help="exponent of the distance penalty (default %(default)s)",
    )
    g.add_argument(
        "--no-rand-init",
        dest="rand_init",
        action="store_false",
        help="do not add U(0,1) tie-breaking noise (default: add it)",
    )
    g.add_argument(
        "--seed", type=non_negative_int, default=DEFAULTS["seed"], help="default %(default)s"
    )
    g.add_argument("--threads", type=positive_int, default=None, help="default: all cores")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: a CUDA GPU when PyTorch sees one, else cpu (the Rust engine); "
        "cuda: PyTorch on GPUs; torch: PyTorch on the CPU; ray: the Rust engine on the "
        "workers of a Ray cluster (default %(default)s)",
    )
    g.add_argument(
        "--ray-address",
        help="--backend ray: the cluster (HOST:PORT); default RAY_ADDRESS, else a cluster "
        "started on this machine with `ray start --head`",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        help="--backend ray: workers sharing the work (default one per node)",
    )
    g.add_argument(
        "--sharding",
        choices=SHARDINGS,
        help="--backend ray: samples: every worker reads the whole pool from shared storage "
        "and scores a share of the samples (default); rows: every worker holds a range of "
        "the rows, for pools too large for one node",
    )
    g.add_argument(
        "--ray-device",
        choices=("cuda", "cpu"),
        help="--backend ray: workers run PyTorch on this device instead of the Rust engine "
        "(cuda: one GPU per worker; the torch backend's scores)",
    )
    t = p.add_argument_group("Parquet input (README: Parquet, Arrow and Hugging Face)")
    t.add_argument(
        "--column",
        help="the list<float> column holding the embeddings (default: embedding, embeddings, "
        "emb, vector or features, else the only list column)",
    )
    t.add_argument(
        "--id-column",
        help="a column of row ids (integers or strings); .csv and .parquet outputs carry them",
    )
    add_cache_flags(p)  # --cache, --cache-dir (cache.py)
    o = p.add_argument_group("output")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    o.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    o.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `zcore-fast`."""
    parser = argparse.ArgumentParser(
        prog="zcore-fast", description="Zero-shot coreset selection (ZCore) from embeddings."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sel = sub.add_parser("select", help="score embeddings and write the coreset indices")
    _add_scoring_flags(sel)
    size = sel.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--budget",
        type=_budget,
        help="fraction in (0, 1] (e.g. 0.1) or a row count >= 1 (e.g. 5000)",
    )
    size.add_argument("--prune-rate", type=float, help="the paper's prune rate p = 1 - budget")
    sel.add_argument(
        "-o",
        "--output",
        required=True,
        help="indices: .npy (int64), .txt (one a line), .csv (index,score,rank; with "
        "--id-column: id,index,score,rank) or .parquet (the same columns)",
    )
    sel.add_argument("--scores-out", help="also write all scores (.npy, float32)")
    add_method_flags(sel)  # --method and its flags (methods.py)
    sc = sub.add_parser("score", help="score embeddings and write the scores")
    _add_scoring_flags(sc)
    sc.add_argument("-o", "--output", required=True, help="scores .npy (float32, one per row)")
    add_quality_commands(sub)  # evaluate, plot (evaluate.py)
    add_embed_command(sub)  # embed (embed.py)
    add_cache_command(sub)  # cache (cache.py)
    return parser


def _inputs(args: argparse.Namespace) -> list[Any]:
    if args.example and args.embeddings:
        raise UsageError("give embedding files or --example, not both")
    if args.example:
        return [example_embeddings()]
    if not args.embeddings:
        raise UsageError("no embeddings given: pass one or more .npy files (or --example)")
    if needs_resolving(args.embeddings):  # folders, globs, Parquet: resolve() checks them
        return list(args.embeddings)
    return as_sources(args.embeddings)


def _check_outputs(args: argparse.Namespace, sources: list[Any]) -> None:
    check_output_path(args.output, sources)
    for item in sources:
        folder = Path(item) if is_sharded(item) and os.path.isdir(item) else None
        for out in (args.output, getattr(args, "scores_out", None)):
            if folder and out and Path(out).resolve().parent == folder.resolve():
                raise UsageError(
                    f"{out} is inside the shard folder {item}; a later run would read it as a "
                    "shard: write it elsewhere"
                )
    if args.command == "select":
        suffix = Path(args.output).suffix.lower()
        if suffix not in (".npy", ".txt", ".csv", ".parquet"):
            raise UsageError(f"{args.output}: output must end in .npy, .txt, .csv or .parquet")
    elif Path(args.output).suffix.lower() != ".npy":
        raise UsageError(f"{args.output}: scores are written as .npy; give a path ending in .npy")
    if getattr(args, "scores_out", None):
        check_output_path(args.scores_out, sources)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs a parsed command; returns the summary it reports."""
    if args.command in QUALITY_COMMANDS:
        return run_quality(args)
    sources = _inputs(args)
    budget: float | int | None = None
    if args.command == "select":
        if args.prune_rate is not None:
            try:
                budget = budget_from_prune_rate(args.prune_rate)
            except ValueError as e:
                raise UsageError(str(e)) from None
        else:
            budget = args.budget
    _check_outputs(args, sources)
    check_cache_dir(args.cache_dir)
    tables = [s for s in sources if is_table(s)]
    if (args.column or args.id_column) and not tables:
        raise UsageError("--column and --id-column apply to Parquet input, not .npy files")
    if tables and len(sources) > 1:
        raise UsageError("a Parquet input is a pool on its own; give it without other files")
    show = not args.quiet and not args.json and sys.stdout.isatty()
    if args.sharding is not None and getattr(args, "method", "zcore") != "zcore":
        raise UsageError(f"--sharding applies to --method zcore, not {args.method}")
    # Row shards go to the Ray workers as files, each reading its rows.
    if args.sharding == "rows" and not tables:
        inputs = row_inputs(sources)  # opened once: the scoring takes them as they are
        info = describe_inputs(inputs, input_names(sources))
        return _run_pool(args, Resolved(inputs, info=info), budget, show)
    if not needs_resolving(sources):
        return _run_pool(args, Resolved(sources), budget, show)
    with ExitStack() as held:
        # The table's bar closes before the scoring bar opens (one live
        # display at a time); the table's cache entry stays held until the
        # run is over.
        with ProgressBar(enabled=show, total=None, label="copying to cache", unit="rows") as bar:
            table = held.enter_context(
                resolve(
                    sources[0] if len(sources) == 1 else sources,
                    column=args.column,
                    id_column=args.id_column,
                    cache=args.cache or "auto",
                    cache_dir=args.cache_dir,
                    threads=args.threads,
                    progress=bar.update,
                )
            )
        return _run_pool(args, table, budget, show)


def _run_pool(
    args: argparse.Namespace, table: Resolved, budget: float | int | None, show: bool
) -> dict[str, Any]:
    """Runs `select` or `score` on a pool whose table (if any) is resolved."""
    if args.sharding == "rows":
        embeddings = table.embeddings
        sources: list[Any] = list(embeddings) if isinstance(embeddings, list) else [embeddings]
        inputs = row_inputs(sources)
        n, d = pool_shape(inputs)
    else:
        sources = as_sources(table.embeddings)
        n, d = _shape(sources)
    if budget is not None and n:
        try:
            keep_count(budget, n)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
    if args.command == "select":
        options_from_args(args)  # a flag of another method is a usage error
        if args.method != "zcore" and (args.cache is not None or args.cache_dir is not None):
            raise UsageError(f"--cache and --cache-dir apply to --method zcore, not {args.method}")
        ray_flags = (args.ray_address, args.workers, args.ray_device, args.sharding)
        if args.method != "zcore" and (
            args.backend != "auto" or any(v is not None for v in ray_flags)
        ):
            # Silently running in this process instead would surprise a
            # user who asked for a cluster or a GPU.
            raise UsageError(
                f"--backend and the Ray flags apply to --method zcore; --method {args.method} "
                "runs in this process (--threads sets its threads)"
            )
        if args.method != "zcore":
            chosen = run_select(args, sources, budget, n, d, table.ids)  # type: ignore[arg-type]
            return _with_table(chosen, table)
    params = {
        "n_sample": args.n_sample,
        "sample_dim": args.sample_dim,
        "redund_nn": args.redund_nn,
        "redund_exp": args.redund_exp,
        "rand_init": args.rand_init,
        "seed": args.seed,
        "threads": args.threads,
        "backend": args.backend,
        # A table's copy is already dimension-major, or in memory.
        "cache": "never" if table.is_table else args.cache or "auto",
        "cache_dir": args.cache_dir,
    }
    ray_flags = (args.ray_address, args.workers, args.ray_device, args.sharding)
    if args.backend == "ray":
        params.update(ray_address=args.ray_address, workers=args.workers, device=args.ray_device)
        params.update(sharding=args.sharding or "samples")
    elif any(v is not None for v in ray_flags):
        raise UsageError(
            "--ray-address, --workers, --ray-device and --sharding apply to --backend ray"
        )
    start = time.perf_counter()
    with ProgressBar(enabled=show, total=None) as bar:
        building = bar.stage("building column cache", "rows")
        report = score_report(sources, progress=bar.update, cache_progress=building, **params)
    scores = report.scores
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
        "n": n,
        "d": d,
        "seconds": round(seconds, 3),
        "parameters": report.parameters,
        "convergence": {
            "spearman_halves": None
            if np.isnan(report.convergence)
            else round(report.convergence, 4),
            "meaning": "Spearman rho between the scores of two independent halves of the "
            "samples; near 1 means more samples would hardly change the ranking",
        },
        "cache": {
            "path": table.cache_path or report.cache_path,
            "built": max(table.cache_seconds, report.cache_seconds) > 0.0,
            "seconds": round(table.cache_seconds + report.cache_seconds, 3),
        },
        "output": str(args.output),
    }
    if args.command == "select":
        indices = select(scores, keep_count(budget, n))  # type: ignore[arg-type]
        save_selection(args.output, indices, scores, table.ids)
        if args.scores_out:
            save_array(args.scores_out, scores)
            summary["scores_out"] = str(args.scores_out)
        summary.update(method="zcore", budget=budget, kept=int(indices.size))
    else:
        save_array(args.output, scores)
    return _with_table(summary, table)


def _with_table(summary: dict[str, Any], table: Resolved) -> dict[str, Any]:
    """Adds what a table input was read from (parts, their first rows, the
    columns) to a summary."""
    if table.is_table:
        summary["input"] = table.info
    return summary


def _shape(sources: Sequence[Any]) -> tuple[int, int]:
    """(rows, total dims) from array shapes and .npy headers; the engine
    checks the files in full."""
    rows, dims = 0, 0
    for s in sources:
        try:
            shape = s.shape if isinstance(s, np.ndarray) else read_header(s).shape
        except (OSError, ValueError):  # the engine reports unreadable files precisely
            return 0, 0
        if len(shape) == 2:
            rows, dims = int(shape[0]), dims + int(shape[1])
    return rows, dims


def _report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.command in QUALITY_COMMANDS:
        report_quality(summary, args)
        return
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        if "kept" in summary:
            print(
                f"kept {summary['kept']:,} of {summary['n']:,} rows "
                f"({summary['kept'] / summary['n']:.1%}) -> {summary['output']} "
                f"in {summary['seconds']:.1f} s{_isa_note(summary)}{_convergence_note(summary)}"
                f"{_cache_note(summary)}"
            )
        else:
            print(
                f"scored {summary['n']:,} rows -> {summary['output']} in "
                f"{summary['seconds']:.1f} s{_isa_note(summary)}{_convergence_note(summary)}"
                f"{_cache_note(summary)}"
            )


def _isa_note(summary: dict[str, Any]) -> str:
    """' (avx2 kernels)' when the Rust engine scored: which instruction-set
    level ran (ZCORE_FAST_ISA picks another) explains the speed."""
    isa = summary.get("parameters", {}).get("isa")
    return f" ({isa} kernels)" if isa else ""


def _convergence_note(summary: dict[str, Any]) -> str:
    """'; split-half rho 0.50' for ZCore runs, so users see whether more
    samples would change the ranking."""
    rho = summary.get("convergence", {}).get("spearman_halves")
    return "" if rho is None else f"; split-half rank agreement (Spearman) {rho:.2f}"


def _cache_note(summary: dict[str, Any]) -> str:
    """'; column cache built in 12.0 s' when this run built one, since it
    explains the time and the disk used."""
    cache = summary.get("cache", {})
    return f"; column cache built in {cache['seconds']:.1f} s" if cache.get("built") else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zcore-fast`; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage error (2) or --help (0): return, don't exit
        return e.code if isinstance(e.code, int) else 2
    if threading.current_thread() is threading.main_thread():
        # A shell may start us with SIGINT ignored; Ctrl-C must still stop us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.command == "embed":  # reports its own errors (embed.py)
        return run_embed_command(args, parser)
    if args.command == "cache":  # likewise (cache.py)
        return run_cache_command(args, parser)
    try:
        summary = run(args)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"zcore-fast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zcore-fast: interrupted; no output written", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, ImportError, _native.ZCoreError) as e:
        if args.debug:
            raise
        print(f"zcore-fast: error: {e}", file=sys.stderr)
        return 1
    _report(summary, args)
    return 0
