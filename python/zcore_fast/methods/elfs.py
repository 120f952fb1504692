"""ELFS (Zheng et al., "ELFS: Label-Free Coreset Selection with Proxy Training
Dynamics", ICLR 2025; eltsai/elfs).

1. Pseudo-labels: k-means clusters of the embeddings (the paper trains TEMI
   cluster heads; k-means is its simple fallback), or the user's labels.
2. Training dynamics: a proxy head trained on the embeddings with the
   pseudo-labels records each row's AUM (default), forgetting or EL2N.
3. Double-end pruning: order the rows hard to easy, drop the hardest beta*N,
   keep the next budget rows, drop the easiest rest. When beta*N + budget
   exceeds N the band shifts to end at the easiest row, so the coreset is
   never short (the reference returns an empty set when beta + budget = 1).
4. beta, unless given, is chosen label-free: for each beta of a grid, a quick
   probe is trained on that beta's coreset of a 90 % split of the rows and
   scored by its accuracy on the pseudo-labels of the held-out 10 %; the best
   beta wins (ties: the smaller beta).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from zcore_fast.io import Embeddings
from zcore_fast.methods.base import (
    ProgressFn,
    Selection,
    Steps,
    blas_threads,
    fraction,
    positive_int,
    rng_for,
    seed_int,
)
from zcore_fast.methods.classes import Labels, classes_for
from zcore_fast.methods.kmeans import MAX_ITER
from zcore_fast.methods.proxy import (
    HARDER_IS_HIGHER,
    Proxy,
    ProxyConfig,
    Recorder,
    TrainingDynamics,
    resolve_device,
    torch_threads,
)
from zcore_fast.methods.rows import Rows, RowsLike, open_resident, open_rows
from zcore_fast.select import Budget, keep_count

#: betas tried by the label-free search; the paper reports 0.4 (CIFAR-10) and
#: 0.3 (ImageNet) at 90 % pruning, inside this range.
BETA_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: Held-out share of the rows that scores each beta (capped at HOLDOUT_MAX rows).
HOLDOUT = 0.1
HOLDOUT_MAX = 10_000
#: Fewest optimiser steps of a search probe.
PROBE_STEPS = 500


def training_dynamics(
    embeddings: RowsLike,
    labels: np.ndarray,
    *,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 0,
    el2n_epochs: int = 10,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> TrainingDynamics:
    """Trains a proxy head on `embeddings` with class ids `labels` (int, in
    [0, C)) and returns every row's AUM, forgetting and EL2N.

    See `ProxyConfig` for the training parameters and `TrainingDynamics` for
    the exact definitions. progress(done, 1000) is called after each epoch.
    """
    rows = open_rows(embeddings)
    y = np.asarray(labels)
    if y.shape != (rows.n,) or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise ValueError(
            f"labels must be {rows.n} non-negative integer class ids (one per row); "
            f"got shape {y.shape}, dtype {y.dtype}"
        )
    config = _config(epochs, batch_size, lr, hidden, el2n_epochs)
    stage = Steps(progress).stage()
    seed = seed_int(seed)
    device = resolve_device(device)
    with torch_threads(threads, device):
        proxy = Proxy(rows, int(y.max()) + 1, config, seed, device)
        recorder = Recorder(rows.n, config.epochs, config.el2n_epochs, device)
        proxy.fit(np.arange(rows.n), y, seed, recorder, on_epoch=stage.report)
        return recorder.result()


def hard_first(scores: np.ndarray, score: str = "aum") -> np.ndarray:
    """Row indices from the hardest to the easiest by a dynamics score (AUM
    ascending; forgetting and EL2N descending); ties by the lower index."""
    s = np.asarray(scores, dtype=np.float64)
    return np.argsort(-s if HARDER_IS_HIGHER[score] else s, kind="stable")


def double_end(order: np.ndarray, budget: Budget, beta: float) -> np.ndarray:
    """Double-end pruning of rows ordered hard to easy: skip the hardest
    floor(beta * N), keep the next `budget` rows. If fewer than `budget` rows
    follow, the kept band is shifted to end at the easiest row, so exactly
    keep_count(budget, N) rows are always kept. Returns them hard to easy."""
    order = np.asarray(order, dtype=np.int64)
    n = order.size
    keep = keep_count(budget, n)
    beta = fraction("beta", beta)
    start = min(math.floor(beta * n), n - keep)
    return order[start : start + keep]


def search_beta(
    proxy: Proxy,
    y: np.ndarray,
    order: np.ndarray,
    keep_fraction: float,
    grid: Sequence[float],
    seed: int,
    progress: ProgressFn | None = None,
) -> tuple[float, dict[str, float]]:
    """(best beta, {beta: held-out pseudo-label accuracy}) over `grid`.

    The rows split once into a held-out part (HOLDOUT, at most HOLDOUT_MAX
    rows) and the rest; each beta's coreset of the rest (double-end pruning of
    `order` restricted to it, same keep fraction) trains a fresh probe for
    `probe_config` epochs, scored on the held-out pseudo-labels `y`. betas that
    give the same coreset are scored once."""
    n = order.size
    stage = Steps(progress).stage()
    held = max(1, min(HOLDOUT_MAX, round(HOLDOUT * n)))
    if n - held < 1:
        return float(min(grid)), {}
    holdout = np.zeros(n, dtype=bool)
    holdout[rng_for(seed, 4).choice(n, size=held, replace=False)] = True
    rest = order[~holdout[order]]
    test = np.flatnonzero(holdout)
    keep = max(1, min(rest.size, round(keep_fraction * rest.size)))
    results: dict[str, float] = {}
    seen: dict[int, float] = {}
    best, best_acc = float(min(grid)), -1.0
    for beta in sorted(grid):
        start = min(math.floor(beta * rest.size), rest.size - keep)
        if start not in seen:
            coreset = np.sort(rest[start : start + keep])
            probe = Proxy.like(proxy, probe_config(proxy.config, keep))
            probe.fit(coreset, y[coreset], seed)
            seen[start] = float(np.mean(probe.predict(test) == y[test]))
        results[f"{beta:g}"] = seen[start]
        if seen[start] > best_acc:  # strict: ties keep the smaller beta
            best, best_acc = float(beta), seen[start]
        stage.report(len(results), len(grid))
    return best, results


def probe_config(config: ProxyConfig, rows: int) -> ProxyConfig:
    """The search probe's training: the proxy's, but with at least PROBE_STEPS
    optimiser steps, so a small coreset (one batch an epoch) is not scored
    by an underfit probe."""
    steps_per_epoch = math.ceil(rows / config.batch_size)
    return replace(config, epochs=max(config.epochs, math.ceil(PROBE_STEPS / steps_per_epoch)))


def run(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    score: str = "aum",
    beta: float | None = None,
    beta_grid: Sequence[float] = BETA_GRID,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 0,
    device: str = "auto",
    max_iter: int = MAX_ITER,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> Selection:
    """ELFS selection with its scores and parameters; see `select`."""
    rows = open_rows(embeddings, check_finite=False)  # `_train` checks the values
    keep = keep_count(budget, rows.n)
    epochs, max_iter = positive_int("epochs", epochs), positive_int("max_iter", max_iter)
    grid = _grid(beta_grid) if beta is None else (fraction("beta", beta),)
    # Shares of the progress: k-means, proxy training, the beta search.
    steps = Steps(progress, (1, 5, 4) if beta is None else (1, 9))
    values, y, proxy, params = _train(
        rows,
        steps,
        score=score,
        labels=labels,
        clusters=clusters,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        device=device,
        max_iter=max_iter,
        seed=seed,
        threads=threads,
    )
    order = hard_first(values, score)
    searched: dict[str, float] = {}
    if beta is None:
        stage = steps.stage()
        with blas_threads(threads), torch_threads(threads, params["device"]):
            beta, searched = search_beta(proxy, y, order, keep / rows.n, grid, seed, stage.report)
    params.update(beta=beta, beta_search=searched or None)
    return Selection("elfs", double_end(order, keep, beta), values, score, params)


def dynamics_scores(
    embeddings: Embeddings | Rows,
    score: str = "aum",
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 0,
    device: str = "auto",
    max_iter: int = MAX_ITER,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(one dynamics score per row, the parameters used): ELFS steps 1 and 2
    (pseudo-labels or `labels`, then the proxy's AUM/forgetting/EL2N)."""
    rows = open_rows(embeddings, check_finite=False)  # `_train` checks the values
    epochs, max_iter = positive_int("epochs", epochs), positive_int("max_iter", max_iter)
    steps = Steps(progress, (1, 9))
    values, _, _, params = _train(
        rows,
        steps,
        score=score,
        labels=labels,
        clusters=clusters,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        device=device,
        max_iter=max_iter,
        seed=seed,
        threads=threads,
    )
    return values, params


def _train(
    rows: Rows,
    steps: Steps,
    *,
    score: str,
    labels: Labels | None,
    clusters: int | None,
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int,
    device: str,
    max_iter: int,
    seed: int,
    threads: int | None,
) -> tuple[np.ndarray, np.ndarray, Proxy, dict[str, Any]]:
    """Classes, then the proxy's dynamics: (score values, classes, proxy, params)."""
    if score not in HARDER_IS_HIGHER:
        raise ValueError(f"unknown ELFS score {score!r}; use aum, forgetting or el2n")
    config = _config(epochs, batch_size, lr, hidden, ProxyConfig.el2n_epochs)
    seed = seed_int(seed)
    device = resolve_device(device)
    rows = open_resident(rows)  # one float32 copy shared by k-means and the proxy
    with blas_threads(threads), torch_threads(threads, device):
        stage = steps.stage()
        y, count, info = classes_for(
            rows,
            labels=labels,
            clusters=clusters,
            seed=seed,
            max_iter=max_iter,
            threads=threads,
            progress=stage.report,
        )
        stage.finish()
        proxy = Proxy(rows, count, config, seed, device)
        recorder = Recorder(rows.n, config.epochs, config.el2n_epochs, device)
        proxy.fit(np.arange(rows.n), y, seed, recorder, on_epoch=steps.stage().report)
    params: dict[str, Any] = {
        **info,
        "score": score,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "hidden": config.hidden,
        "device": device,
        "max_iter": max_iter,
        "seed": seed,
    }
    return recorder.result().score(score), y, proxy, params


def select(
    embeddings: Embeddings | Rows,
    budget: Budget,
    *,
    labels: Labels | None = None,
    clusters: int | None = None,
    score: str = "aum",
    beta: float | None = None,
    beta_grid: Sequence[float] = BETA_GRID,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 0,
    device: str = "auto",
    max_iter: int = MAX_ITER,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """ELFS: label-free selection by proxy training dynamics and double-end pruning.

    Args:
        embeddings: what `zcore_fast.score` accepts.
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        labels: true classes (array or .npy path) instead of k-means pseudo-labels.
        clusters: k of the k-means pseudo-labels (default 10, at most N).
        score: "aum" (default), "forgetting" or "el2n".
        beta: fraction of the hardest rows to drop; default: searched on `beta_grid`.
        beta_grid: betas tried by the label-free search.
        epochs, batch_size, lr, hidden: the proxy's training (see `ProxyConfig`).
        device: "auto" (GPU when present), "cpu", "cuda", ...
        max_iter: k-means iteration cap.
        seed: seeds k-means, the proxy, data order and the search split.
        threads: cap on torch (and BLAS) threads.
        progress: progress(done, 1000) as k-means, the epochs and the betas finish.

    Returns:
        int64 indices of the kept band, ordered hard to easy (AUM ascending).
    """
    return run(
        embeddings,
        budget,
        labels=labels,
        clusters=clusters,
        score=score,
        beta=beta,
        beta_grid=beta_grid,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        device=device,
        max_iter=max_iter,
        seed=seed,
        threads=threads,
        progress=progress,
    ).indices


def _config(epochs: int, batch_size: int, lr: float, hidden: int, el2n_epochs: int) -> ProxyConfig:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 < lr < math.inf):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"hidden must be a non-negative integer (0: linear head), got {hidden!r}")
    return replace(
        ProxyConfig(),
        epochs=positive_int("epochs", epochs),
        batch_size=positive_int("batch_size", batch_size),
        lr=float(lr),
        hidden=hidden,
        el2n_epochs=positive_int("el2n_epochs", el2n_epochs),
    )


def _grid(values: Sequence[float]) -> tuple[float, ...]:
    grid = tuple(fraction("beta_grid value", v) for v in values)
    if not grid:
        raise ValueError("beta_grid is empty; give at least one beta in [0, 1)")
    return grid
