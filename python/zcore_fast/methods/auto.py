"""`auto`: the method to use for a given budget, by a rule measured on real
data (README "Low-budget methods", the Fashion-MNIST table).

The rule is in examples per class, budget / `classes` (default 10, the
class count of the pools measured here; pass the number of classes or
modes you expect). Small budgets need every mode covered, and a typical row
of each (TypiClust); from 50 to 200 per class kernel herding held a small
lead; past that no label-free method measured here beat a uniform sample, so
`auto` takes one.
"""

from __future__ import annotations

from typing import Any

from zcore_fast.io import Embeddings
from zcore_fast.methods import herding, typiclust
from zcore_fast.methods import random as random_method
from zcore_fast.methods.base import ProgressFn, Selection, positive_int, seed_int
from zcore_fast.methods.classes import DEFAULT_CLUSTERS
from zcore_fast.methods.rows import Rows, open_rows
from zcore_fast.select import Budget, keep_count

#: (largest examples per class, method): the first row whose bound the
#: budget does not exceed decides. From the measured table (README).
RULE: tuple[tuple[float, str], ...] = (
    (50.0, "typiclust"),
    (200.0, "herding"),
    (float("inf"), "random"),
)

#: Why each choice, for `--json`.
REASONS = {
    "typiclust": "few examples per class: one typical row per k-means cluster covers every mode",
    "herding": "50 to 200 per class: kernel coverage spreads rows over the modes by density",
    "random": "many examples per class: no label-free method measured beat a uniform sample",
}


def choose(budget_rows: int, classes: int = DEFAULT_CLUSTERS) -> str:
    """The method `auto` runs for `budget_rows` rows and `classes` classes."""
    per_class = budget_rows / positive_int("classes", classes)
    for bound, method in RULE:
        if per_class <= bound:
            return method
    return RULE[-1][1]


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    classes: int = DEFAULT_CLUSTERS,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """Runs the method `choose` picks; params say which and why."""
    rows = open_rows(embeddings, check_finite=False)  # the chosen method checks values
    seed = seed_int(seed)
    keep = keep_count(budget, rows.n)
    method = choose(keep, classes)
    if method == "typiclust":
        inner = typiclust.run(rows, keep, seed=seed, threads=threads, progress=progress)
    elif method == "herding":
        inner = herding.run(rows, keep, seed=seed, threads=threads, progress=progress)
    else:
        inner = random_method.run(rows, keep, seed=seed)
    params: dict[str, Any] = {
        "chose": method,
        "why": REASONS[method],
        "examples_per_class": keep / classes,
        "classes": classes,
        "rule": [[bound if bound != float("inf") else None, m] for bound, m in RULE],
        method: inner.params,
        "seed": seed,
    }
    return Selection("auto", inner.indices, inner.scores, inner.score_name, params)


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    seed: int = 0,
    classes: int = DEFAULT_CLUSTERS,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Any:
    """The recommended selection for this budget (see `RULE`).

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: passed to the chosen method.
        classes: classes (or modes) expected in the pool; the rule reads
            budget / classes (default 10).
        threads, progress: passed to the chosen method.

    Returns:
        int64 indices, in the chosen method's order.
    """
    return run(
        embeddings, budget, seed=seed, classes=classes, threads=threads, progress=progress
    ).indices
