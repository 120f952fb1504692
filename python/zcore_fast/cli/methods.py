"""`zcore-fast select --method ...`: the flags of the selection methods other
than ZCore, which of them apply to which method, and the run itself."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from zcore_fast.cli.usage import UsageError, fraction, non_negative_int, positive_int
from zcore_fast.io import save_array, save_selection
from zcore_fast.methods.base import PROGRESS_TOTAL
from zcore_fast.methods.ccs import SCORE_DESCENDING, STRATA
from zcore_fast.methods.classes import DEFAULT_CLUSTERS
from zcore_fast.methods.elfs import BETA_GRID
from zcore_fast.methods.proxy import HARDER_IS_HIGHER
from zcore_fast.methods.registry import METHODS, method_options, run_method
from zcore_fast.methods.scorers import ZCORE_OPTIONS
from zcore_fast.methods.zcore import DEFAULTS
from zcore_fast.progress import ProgressBar
from zcore_fast.select import Budget

#: Method flags (argparse dest) -> the option they set. All default to None,
#: so a flag given to a method that does not use it is an error, not ignored.
FLAG_OPTIONS = {
    "clusters": "clusters",
    "beta": "beta",
    "elfs_score": "score",
    "epochs": "epochs",
    "hidden": "hidden",
    "device": "device",
    "ccs_score": "score",
    "mis_ratio": "mis_ratio",
    "strata": "strata",
    "classes": "classes",
}
#: Scores that are computed over classes, so --labels applies to them.
CLASS_SCORES = ("moderate", "aum", "forgetting", "el2n")


def _usage(message: str) -> UsageError:
    return UsageError(message)


def add_method_flags(p: argparse.ArgumentParser) -> None:
    """Adds --method and the method flags to the `select` parser."""
    g = p.add_argument_group(
        "selection method (README: Other selection methods)",
        "ZCore's flags above apply to --method zcore and to --method ccs --ccs-score zcore",
    )
    g.add_argument("--method", choices=METHODS, default="zcore", help="default %(default)s")
    g.add_argument(
        "--labels",
        help="labels .npy, one per row: classes for moderate/elfs (and ccs over their "
        "scores) instead of k-means clusters",
    )
    g.add_argument(
        "--clusters",
        type=positive_int,
        help=f"k-means clusters as classes (moderate, elfs, ccs; default {DEFAULT_CLUSTERS})",
    )
    g.add_argument(
        "--elfs-score",
        choices=tuple(HARDER_IS_HIGHER),
        help="elfs: training-dynamics score (default aum)",
    )
    g.add_argument(
        "--beta",
        type=fraction,
        help="elfs: fraction of the hardest rows to drop (default: searched over "
        f"{', '.join(f'{b:g}' for b in BETA_GRID)})",
    )
    g.add_argument(
        "--epochs",
        type=positive_int,
        help="elfs (and ccs over aum/forgetting/el2n): proxy epochs (default 20)",
    )
    g.add_argument(
        "--hidden",
        type=non_negative_int,
        help="elfs (and ccs over dynamics): proxy hidden width, 0 = linear (default 0)",
    )
    g.add_argument(
        "--device", help="elfs (and ccs over dynamics): torch device, auto/cpu/cuda (default auto)"
    )
    g.add_argument(
        "--ccs-score",
        choices=tuple(SCORE_DESCENDING),
        help="ccs: the score to stratify (default zcore)",
    )
    g.add_argument(
        "--mis-ratio", type=fraction, help="ccs: fraction of the hardest rows dropped (default 0)"
    )
    g.add_argument(
        "--strata", type=positive_int, help=f"ccs: number of score strata (default {STRATA})"
    )
    g.add_argument(
        "--classes",
        type=positive_int,
        help="auto: classes (or modes) expected; its rule reads budget / classes (default 10)",
    )


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The method's options from the flags; a usage error for a flag the
    chosen method does not use."""
    method = args.method
    score = args.ccs_score or "zcore"
    allowed = set(method_options(method, score))
    options: dict[str, Any] = {}
    for dest, name in FLAG_OPTIONS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        owner = {"elfs_score": "elfs", "ccs_score": "ccs"}.get(dest, method)
        if owner != method or name not in allowed:
            where = f"--method {method}" + (f" --ccs-score {score}" if method == "ccs" else "")
            raise _usage(f"--{dest.replace('_', '-')} does not apply to {where}")
        options[name] = value
    for name in ZCORE_OPTIONS:
        value = getattr(args, name)
        # The ZCore flags have defaults, so only a changed value can be caught.
        if value != DEFAULTS[name]:
            if name not in allowed:
                flag = "--no-rand-init" if name == "rand_init" else f"--{name.replace('_', '-')}"
                raise _usage(f"{flag} is a ZCore flag; it does not apply to --method {method}")
            options[name] = value
    uses_labels = method in ("moderate", "elfs") or (method == "ccs" and score in CLASS_SCORES)
    if args.labels is not None and not uses_labels:
        raise _usage(f"--labels does not apply to --method {method} (it uses no classes)")
    return options


def run_select(
    args: argparse.Namespace,
    sources: list[Any],
    budget: Budget,
    n: int,
    d: int,
    ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """Runs `select` with a method other than ZCore; returns the summary.
    `ids` (a table's id column) go into .csv and .parquet outputs."""
    options = options_from_args(args)
    if args.method == "random" and args.scores_out:
        raise _usage("--method random has no scores; drop --scores-out")
    show = not args.quiet and not args.json and sys.stdout.isatty()
    start = time.perf_counter()
    with ProgressBar(enabled=show, total=PROGRESS_TOTAL, label=args.method, unit="‰") as bar:
        selection = run_method(
            args.method,
            sources,
            budget,
            seed=args.seed,
            labels=args.labels,
            threads=args.threads,
            progress=bar.update,
            **options,
        )
    seconds = time.perf_counter() - start
    save_selection(args.output, selection.indices, selection.scores, ids)
    summary: dict[str, Any] = {
        "method": args.method,
        "n": n,
        "d": d,
        "seconds": round(seconds, 3),
        "parameters": {**selection.params, "threads": args.threads},
        "score": selection.score_name,
        "output": str(args.output),
    }
    if args.labels is not None:
        summary["parameters"]["labels"] = str(args.labels)
    if args.scores_out and selection.scores is not None:
        save_array(args.scores_out, selection.scores.astype("float32"))
        summary["scores_out"] = str(args.scores_out)
    summary.update(budget=budget, kept=int(selection.indices.size))
    return summary
