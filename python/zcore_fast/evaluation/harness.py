"""`evaluate`: accuracy of a probe (linear, k-NN) trained on each method's
coreset, for each budget and seed, against the probe trained on all the data."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np

from zcore_fast.evaluation.data import Labels, load_labels, load_matrix
from zcore_fast.evaluation.knn_probe import KNNProbe
from zcore_fast.evaluation.probe import LinearProbe
from zcore_fast.evaluation.results import EvalResults, Run
from zcore_fast.evaluation.selection import Selector
from zcore_fast.evaluation.splits import stratified_holdout
from zcore_fast.io import Embeddings
from zcore_fast.select import keep_count

#: progress(done, total, stage): `done` of `total` steps (one step per
#: selection + probe), `stage` says what runs next ("zcore seed 1: scoring").
#: Raising from it stops the evaluation and propagates.
EvalProgressFn = Callable[[int, int, str], object]

#: The prune rates of the ZCore paper's tables.
PRUNE_RATES: tuple[float, ...] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)

#: The probes `evaluate` can train on a coreset, by name.
PROBES: dict[str, type[LinearProbe] | type[KNNProbe]] = {
    "linear": LinearProbe,
    "knn": KNNProbe,
}


def evaluate(
    embeddings: Embeddings,
    labels: Labels,
    *,
    test_embeddings: Embeddings | None = None,
    test_labels: Labels | None = None,
    methods: Sequence[str] = ("zcore", "random"),
    prune_rates: Sequence[float] | None = PRUNE_RATES,
    budgets: Sequence[int] = (),
    probes: Sequence[str] = ("linear",),
    seeds: int | Sequence[int] = 3,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    threads: int | None = None,
    progress: EvalProgressFn | None = None,
) -> EvalResults:
    """Measures how well each method's coresets train a probe.

    For every method, seed and budget (prune rate p: N - floor(p N) rows;
    or a count of rows): the method selects the training rows **without
    labels** (labels are never passed to a method, even one that accepts
    them); each probe is trained on those rows and their labels and its
    accuracy on the test rows is recorded: "linear" (`LinearProbe`: L2
    logistic regression, regularisation chosen on a validation split of the
    coreset) and "knn" (`KNNProbe`: weighted k-NN on cosine similarity, k
    chosen by leave-one-out). One more probe of each kind on all training
    rows gives the full-data reference.

    Args:
        embeddings: training pool: an array (N x D), a .npy path, or a list
            of them concatenated along D (as `zcore_fast.score` takes).
        labels: N class labels (ints or strings, array or .npy path); used
            only to train and test the probe.
        test_embeddings, test_labels: a separate test set (both or neither).
            Without one, a stratified `test_fraction` of the rows is held out
            (seeded by `split_seed`) and selection sees only the rest.
        methods: names from `zcore_fast.METHODS`.
        prune_rates: fractions in (0, 1) of the pool to drop (None or ()
            for none: then `budgets` must be given).
        budgets: coreset sizes as row counts (1 <= count < N), measured
            after the prune rates; a run's prune_rate is 1 - count / N.
        probes: "linear", "knn" or both (default linear).
        seeds: a number of seeds (0, 1, ...) or the seeds themselves; each
            seeds the selection and the probe's validation split.
        method_options: per-method keywords, e.g. {"zcore": {"n_sample": 10**5}}.
        threads: worker threads for the methods (default: all cores).
        progress: progress(done, total, stage), see `EvalProgressFn`.

    Returns:
        `EvalResults`: every run, summaries over seeds, the full-data accuracy.

    Raises:
        ValueError, TypeError, FileNotFoundError: bad input, saying what to fix.
    """
    # The cheap checks first: a typo should not wait for a large file to load.
    if (test_embeddings is None) != (test_labels is None):
        raise ValueError("give test_embeddings and test_labels together, or neither")
    methods_t = _methods(methods)
    rates = _prune_rates(prune_rates or (), allow_empty=bool(budgets))
    counts = _budgets(budgets)
    probes_t = _probes(probes)
    seeds_t = _seeds(seeds)
    options = _options(method_options, methods_t)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x = load_matrix(embeddings, "embeddings")
    y = load_labels(labels, x.shape[0], "embeddings")

    if test_embeddings is not None:
        x_test = load_matrix(test_embeddings, "test_embeddings")
        if x_test.shape[1] != x.shape[1]:
            raise ValueError(
                f"test_embeddings have {x_test.shape[1]} dimensions but embeddings have "
                f"{x.shape[1]}; embed both with the same model"
            )
        y_test = load_labels(test_labels, x_test.shape[0], "test_embeddings")  # type: ignore[arg-type]
        x_train, y_train = x, y
    else:
        train, test = stratified_holdout(y, test_fraction, split_seed)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    _check_classes(y_train, y_test)
    points = _points(rates, counts, int(x_train.shape[0]))

    steps = [(m, s) for m in methods_t for s in seeds_t]
    tracker = _Tracker(progress, len(steps) * len(points) + 1)
    tracker.stage("probe on all training rows")
    full = {p: PROBES[p](seed=split_seed).fit(x_train, y_train) for p in probes_t}
    full_accuracy = {p: full[p].score(x_test, y_test) for p in probes_t}
    tracker.advance()
    runs: list[Run] = []
    selector = Selector(x_train, threads)
    for method, seed in steps:
        coresets = selector.coresets(method, points, seed, options.get(method, {}), tracker.stage)
        for rate, keep, seconds in coresets:
            tracker.stage(f"{method} seed {seed}: probes on {keep.size:,} rows")
            for name in probes_t:
                start = time.perf_counter()
                probe = PROBES[name](seed=seed).fit(x_train[keep], y_train[keep])
                accuracy = probe.score(x_test, y_test)
                runs.append(
                    Run(
                        method=method,
                        prune_rate=rate,
                        seed=seed,
                        n_selected=int(keep.size),
                        accuracy=accuracy,
                        reg=_strength(probe),
                        select_seconds=seconds,
                        probe_seconds=time.perf_counter() - start,
                        probe=name,
                    )
                )
            tracker.advance()
    tracker.stage("done")
    return EvalResults(
        runs=runs,
        full_accuracy=full_accuracy[probes_t[0]],
        full_reg=_strength(full[probes_t[0]]),
        n_train=int(x_train.shape[0]),
        n_test=int(x_test.shape[0]),
        n_classes=int(np.unique(np.concatenate([y_train, y_test])).size),
        dims=int(x.shape[1]),
        methods=methods_t,
        prune_rates=tuple(rate for rate, _ in points),
        seeds=seeds_t,
        held_out=test_embeddings is None,
        method_options={m: dict(o) for m, o in options.items()},
        probes=probes_t,
        full_accuracies=full_accuracy,
    )


def _strength(probe: LinearProbe | KNNProbe) -> float:
    """What a run records as `reg`: the linear probe's L2 strength, the k of k-NN."""
    return float(probe.reg_ if isinstance(probe, LinearProbe) else probe.k_)


def _points(
    rates: tuple[float, ...], counts: tuple[int, ...], n: int
) -> tuple[tuple[float, int], ...]:
    """(prune rate, rows kept) per budget: the prune rates, then the counts."""
    points = [(rate, keep_count(1.0 - rate, n)) for rate in rates]
    for count in counts:
        if count >= n:
            raise ValueError(
                f"budget {count:,} is not below the {n:,} training rows; a coreset must be smaller"
            )
        points.append((1.0 - count / n, count))
    seen: dict[int, tuple[float, int]] = {}
    for rate, keep in points:
        seen.setdefault(keep, (rate, keep))  # one point per coreset size
    return tuple(seen.values())


def _budgets(budgets: Sequence[int]) -> tuple[int, ...]:
    out: list[int] = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, Integral) or b < 1:
            raise ValueError(f"budgets are row counts >= 1, got {b!r}")
        out.append(int(b))
    return tuple(dict.fromkeys(out))


def _probes(probes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(probes, str):
        probes = [p.strip() for p in probes.split(",")]
    out = tuple(dict.fromkeys(probes))
    unknown = [p for p in out if p not in PROBES]
    if not out or unknown:
        raise ValueError(f"probes must be among {', '.join(PROBES)}, got {list(probes)!r}")
    return out


class _Tracker:
    """Calls progress(done, total, stage) as steps start and end."""

    def __init__(self, progress: EvalProgressFn | None, total: int) -> None:
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable as progress(done, total, stage)")
        self.progress = progress
        self.total = total
        self.done = 0

    def stage(self, text: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, text)

    def advance(self) -> None:
        self.done += 1


def _check_classes(y_train: np.ndarray, y_test: np.ndarray) -> None:
    classes = np.unique(y_train)
    if classes.size < 2:
        raise ValueError(
            f"the training labels have a single class ({classes[0]!r}); accuracy needs at "
            "least two classes"
        )
    if y_test.size == 0:
        raise ValueError("the test set is empty; give more rows or a larger test_fraction")


def _methods(methods: Sequence[str]) -> tuple[str, ...]:
    from zcore_fast.methods import METHODS

    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",")]
    out = tuple(dict.fromkeys(methods))  # drop repeats, keep order
    if not out:
        raise ValueError(f"no methods given; choose from {', '.join(METHODS)}")
    unknown = [m for m in out if m not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown method {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}"
        )
    return out


def _prune_rates(prune_rates: Sequence[float], *, allow_empty: bool = False) -> tuple[float, ...]:
    rates: list[float] = []
    for p in prune_rates:
        if isinstance(p, bool) or not isinstance(p, Real) or not math.isfinite(float(p)):
            raise TypeError(f"prune rates must be numbers, got {p!r}")
        if not 0.0 < float(p) < 1.0:
            raise ValueError(
                f"prune rate {p} is outside (0, 1): it is the fraction of the pool dropped "
                "(0.9 keeps 10%)"
            )
        rates.append(float(p))
    if not rates and not allow_empty:
        raise ValueError("no prune rates given")
    return tuple(dict.fromkeys(rates))


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        return tuple(range(int(seeds)))
    out = tuple(dict.fromkeys(seeds))  # type: ignore[arg-type]
    if not out or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s >= 0 for s in out
    ):
        raise ValueError(f"seeds must be a count >= 1 or non-negative integers, got {seeds!r}")
    return tuple(int(s) for s in out)


def _options(
    method_options: Mapping[str, Mapping[str, Any]] | None, methods: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    options = {k: dict(v) for k, v in (method_options or {}).items()}
    stray = [m for m in options if m not in methods]
    if stray:
        raise ValueError(
            f"options given for {', '.join(stray)}, which {'is' if len(stray) == 1 else 'are'} "
            f"not among the methods evaluated ({', '.join(methods)})"
        )
    from zcore_fast.methods import method_options as accepted

    for method, opts in options.items():
        for reserved in ("seed", "labels", "threads", "progress", "budget"):
            if reserved in opts:
                raise ValueError(
                    f"option {reserved!r} for {method} is set by evaluate itself; remove it"
                )
        # Checked here, not when the method first runs: a typo should fail
        # now, not after an hour of other methods.
        known = accepted(method, opts.get("score", "zcore"))
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise ValueError(
                f"unknown option {', '.join(map(repr, unknown))} for {method}; it takes "
                f"{', '.join(known) or 'no options'}"
            )
    return options
