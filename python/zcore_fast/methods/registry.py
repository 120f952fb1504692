"""Every selection method behind one call: `select_with(method, ...)`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from zcore_fast.integrations.tables import resolve
from zcore_fast.io import Embeddings
from zcore_fast.methods import auto, ccs, elfs, herding, moderate, probcover, typiclust
from zcore_fast.methods import random as random_method
from zcore_fast.methods import zcore as zcore_method
from zcore_fast.methods.base import ProgressFn, Selection, positive_int, seed_int
from zcore_fast.methods.classes import Labels
from zcore_fast.methods.rows import open_rows
from zcore_fast.methods.scorers import (
    CLASS_OPTIONS,
    DYNAMICS_OPTIONS,
    SCORE_OPTIONS,
    ZCORE_OPTIONS,
    ZCORE_RUN_OPTIONS,
    check_options,
    refuse_labels,
)
from zcore_fast.select import Budget, keep_count
from zcore_fast.select import select as top_scores

#: The selection methods, by name.
METHODS: tuple[str, ...] = (
    "zcore",
    "moderate",
    "elfs",
    "ccs",
    "random",
    "typiclust",
    "probcover",
    "herding",
    "auto",
)

#: Each method's own options (besides seed, labels, threads, progress). CCS
#: also takes the options of the score it stratifies (`method_options`).
OWN_OPTIONS: dict[str, tuple[str, ...]] = {
    "zcore": (*ZCORE_OPTIONS, *ZCORE_RUN_OPTIONS),
    "moderate": CLASS_OPTIONS,
    "elfs": (*DYNAMICS_OPTIONS, "score", "beta", "beta_grid"),
    "ccs": ("score", "descending", "mis_ratio", "strata"),
    "random": (),
    "typiclust": ("max_clusters", "max_iter", "normalise"),
    "probcover": ("clusters", "alpha", "delta", "max_iter"),
    "herding": ("neighbors", "sigma"),
    "auto": ("classes",),
}


def method_options(method: str, score: object = "zcore") -> tuple[str, ...]:
    """Option names `method` accepts; for CCS, with those of `score`."""
    _check_method(method)
    own = OWN_OPTIONS[method]
    if method == "ccs" and isinstance(score, str):
        return (*own, *SCORE_OPTIONS.get(score, ()))
    return own


def run_method(
    method: str,
    embeddings: Embeddings,
    budget: Budget,
    *,
    seed: int = 0,
    labels: Labels | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    column: str | None = None,
    id_column: str | None = None,
    **options: Any,
) -> Selection:
    """Like `select_with`, returning the full `Selection` (indices, the
    per-row scores selected by, every parameter used, and a table's ids)."""
    _check_method(method)
    seed = seed_int(seed)
    if threads is not None:
        threads = positive_int("threads", threads)
    check_options(
        f"method {method!r}", options, method_options(method, options.get("score", "zcore"))
    )
    # ZCore's column cache options also place a table's or shard folder's
    # copy; that copy is then used as it is.
    cache = {k: options[k] for k in ("cache", "cache_dir") if k in options}
    with resolve(embeddings, column=column, id_column=id_column, threads=threads, **cache) as table:
        if table.is_table and "cache" in options:
            options = {**options, "cache": "never"}
        selection = _RUNNERS[method](
            table.embeddings, budget, seed, labels, threads, progress, options
        )
    if not table.is_table:
        return selection
    return replace(selection, ids=table.ids, source=table.info)


def select_with(
    method: str,
    embeddings: Embeddings,
    budget: Budget,
    *,
    seed: int = 0,
    labels: Labels | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    column: str | None = None,
    id_column: str | None = None,
    **options: Any,
) -> np.ndarray:
    """Selects a coreset of `embeddings` with any method, by name.

    Args:
        method: one of `METHODS`: "zcore", "moderate", "elfs", "ccs", "random",
            "typiclust", "probcover", "herding", "auto" (README "Low-budget
            methods": which to use when).
        embeddings: what `zcore_fast.score` accepts (array, .npy path, a
            list of them concatenated along dimensions, or a table: Parquet
            file or folder, pyarrow Table, Hugging Face dataset).
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: seeds every random step; the same seed gives the same indices.
        labels: one class per row (array or .npy path). Used by moderate and
            elfs (instead of k-means classes) and by ccs over the moderate,
            aum, forgetting or el2n score; zcore and random refuse them.
        threads: worker threads (zcore's engine; torch for ELFS, one by
            default on the CPU; BLAS with threadpoolctl installed).
        progress: progress(done, total): in samples for zcore; in thousandths
            (total 1000, stages weighted by cost) for the others; random
            does not call it. Raising from it stops the method.
        **options: the method's options (`method_options(method)`):
            zcore: n_sample, sample_dim, redund_nn, redund_exp, rand_init, and
            where it runs: backend ("ray" for a Ray cluster), device,
            ray_address, workers, sharding ("samples" or "rows"); the column
            cache: cache, cache_dir (as `score` takes them);
            moderate: clusters, max_iter; elfs: score, beta, beta_grid,
            clusters, epochs, batch_size, lr, hidden, device, max_iter;
            ccs: score, descending, mis_ratio, strata + the score's options;
            typiclust: max_clusters, max_iter, normalise; probcover: clusters, alpha,
            delta, max_iter; herding: neighbors, sigma; auto: classes.
        column: a table's embedding column (default: "embedding",
            "embeddings", ... or its only list column).
        id_column: a table's id column; `run_method(...).ids` holds the ids.

    Returns:
        int64 row indices, keep_count(budget, N) of them. Order: zcore, highest
        score first; moderate, nearest the median distance first; elfs and
        ccs, hardest first by their score; random, the order drawn;
        typiclust, one per cluster in rounds; probcover and herding, the
        greedy's order; auto, that of the method it chose.

    Raises:
        ValueError: unknown method or option, bad budget or parameter, labels
            where they are not used; FileNotFoundError/TypeError for bad input.
    """
    return run_method(
        method,
        embeddings,
        budget,
        seed=seed,
        labels=labels,
        threads=threads,
        progress=progress,
        column=column,
        id_column=id_column,
        **options,
    ).indices


def _check_method(method: object) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _zcore(
    embeddings: Embeddings,
    budget: Budget,
    seed: int,
    labels: Labels | None,
    threads: int | None,
    progress: ProgressFn | None,
    options: dict[str, Any],
) -> Selection:
    refuse_labels("zcore", labels)
    rows = open_rows(embeddings, check_finite=False)  # the engine checks values itself
    keep = keep_count(budget, rows.n)  # before scoring, not after
    report = zcore_method.score_report(
        rows.sources, seed=seed, threads=threads, progress=progress, **options
    )
    # The resolved parameters (n_sample="auto" becomes its count) and the
    # convergence measure, so summaries say what actually ran.
    params: dict[str, Any] = {k: zcore_method.DEFAULTS[k] for k in ZCORE_OPTIONS}
    params.update(options, seed=seed, threads=threads)
    params.update(report.parameters, convergence=report.convergence)
    return Selection("zcore", top_scores(report.scores, keep), report.scores, "zcore", params)


def _labels_to_run(run: Callable[..., Selection]) -> Callable[..., Selection]:
    """The runner of a method whose own `run` takes labels (moderate, elfs)."""

    def runner(
        embeddings: Embeddings,
        budget: Budget,
        seed: int,
        labels: Labels | None,
        threads: int | None,
        progress: ProgressFn | None,
        options: dict[str, Any],
    ) -> Selection:
        return run(
            embeddings,
            budget,
            labels=labels,
            seed=seed,
            threads=threads,
            progress=progress,
            **options,
        )

    return runner


def _label_free(run: Callable[..., Selection]) -> Callable[..., Selection]:
    """The runner of a label-free method with threads and progress (typiclust,
    probcover, herding, auto): labels are refused, not ignored."""

    def runner(
        embeddings: Embeddings,
        budget: Budget,
        seed: int,
        labels: Labels | None,
        threads: int | None,
        progress: ProgressFn | None,
        options: dict[str, Any],
    ) -> Selection:
        refuse_labels(run.__module__.rsplit(".", 1)[-1], labels)
        return run(embeddings, budget, seed=seed, threads=threads, progress=progress, **options)

    return runner


def _ccs(
    embeddings: Embeddings,
    budget: Budget,
    seed: int,
    labels: Labels | None,
    threads: int | None,
    progress: ProgressFn | None,
    options: dict[str, Any],
) -> Selection:
    if labels is not None:
        options = {**options, "labels": labels}  # the score decides whether it uses them
    return ccs.run(embeddings, budget, seed=seed, threads=threads, progress=progress, **options)


def _random(
    embeddings: Embeddings,
    budget: Budget,
    seed: int,
    labels: Labels | None,
    threads: int | None,
    progress: ProgressFn | None,
    options: dict[str, Any],
) -> Selection:
    refuse_labels("random", labels)
    return random_method.run(embeddings, budget, seed=seed)


_RUNNERS: dict[str, Callable[..., Selection]] = {
    "zcore": _zcore,
    "moderate": _labels_to_run(moderate.run),
    "elfs": _labels_to_run(elfs.run),
    "ccs": _ccs,
    "random": _random,
    "typiclust": _label_free(typiclust.run),
    "probcover": _label_free(probcover.run),
    "herding": _label_free(herding.run),
    "auto": _label_free(auto.run),
}
