"""Pictures: accuracy against coreset size, and the 2-D score map of a pool.

matplotlib is optional (`pip install "zcore-fast[plot]"`) and imported only
here, when a picture is drawn. Figures are drawn on the Agg canvas without
pyplot, so plotting never touches a user's global matplotlib state or needs a
display, and PNGs are written atomically (temp file + rename).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zcore_fast.evaluation.data import Vector, load_indices, load_scores, row_count
from zcore_fast.evaluation.projection import Projection, project
from zcore_fast.evaluation.results import EvalResults, Summary
from zcore_fast.io import Embeddings, PathLike, atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Display names and fixed colours, so a method looks the same in every figure.
_STYLE: dict[str, tuple[str, str]] = {
    "zcore": ("ZCore", "#d62728"),
    "moderate": ("Moderate", "#1f77b4"),
    "elfs": ("ELFS", "#2ca02c"),
    "ccs": ("CCS", "#9467bd"),
    "random": ("Random", "#7f7f7f"),
    "typiclust": ("TypiClust", "#ff7f0e"),
    "probcover": ("ProbCover", "#8c564b"),
    "herding": ("Herding", "#e377c2"),
    "auto": ("auto", "#17becf"),
}


def require_matplotlib() -> None:
    """Raises ImportError with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            'plotting needs matplotlib, which is not installed: pip install "zcore-fast[plot]"'
        ) from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike) -> None:
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")


def plot_accuracy(results: EvalResults, path: PathLike, *, title: str | None = None) -> None:
    """Draws test accuracy against coreset size (log x axis) to a PNG, one
    panel per probe: one line per method at its mean over seeds, a band of
    +-1 standard deviation, the prune rates on the top axis, and a dashed
    line at the accuracy of the probe trained on all the data (the ZCore
    paper's Figure 5 shape). Sizes are counts, so a plot that reaches down to
    one example per class reads the same as one of prune rates."""
    probes = results.probes or ("linear",)
    fig = _figure(7.5 * len(probes), 4.8)
    axes = fig.subplots(1, len(probes), squeeze=False)[0]
    summaries = results.summary()
    seeds = len(results.seeds)
    band = f"mean ± 1 s.d. over {seeds} seeds" if seeds > 1 else "1 seed"
    if title:
        fig.suptitle(title, fontsize=10)
    for ax, probe in zip(axes, probes):
        rows_of = [s for s in summaries if s.probe == probe]
        _panel(ax, results, rows_of, probe)
        name = _PROBE_NAMES.get(probe, probe)
        ax.set_title(
            f"{name} trained on each coreset\n({band}; {results.n_test:,} test rows)",
            fontsize=10,
        )
    _save(fig, path)


#: Panel titles per probe.
_PROBE_NAMES = {"linear": "Linear probe", "knn": "k-NN probe"}


def _panel(ax: Any, results: EvalResults, summaries: list[Summary], probe: str) -> None:
    sizes: dict[int, float] = {}
    for i, method in enumerate(results.methods):
        rows = sorted((s for s in summaries if s.method == method), key=lambda s: s.n_selected)
        if not rows:
            continue
        name, colour = _STYLE.get(method, (method, f"C{i}"))
        n = np.array([s.n_selected for s in rows])
        mean = np.array([s.accuracy_mean for s in rows]) * 100
        std = np.array([s.accuracy_std for s in rows]) * 100
        ax.plot(n, mean, marker="o", ms=4, lw=1.8, color=colour, label=name, zorder=3)
        # +-1 s.d., clipped to what an accuracy can be
        low, high = np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100)
        ax.fill_between(n, low, high, color=colour, alpha=0.18, lw=0, zorder=2)
        sizes.update({s.n_selected: s.prune_rate for s in rows})
    full = results.full_summary(probe).accuracy_mean * 100
    ax.axhline(
        full,
        ls="--",
        lw=1.2,
        color="black",
        label=f"all {results.n_train:,} examples ({full:.1f}%)",
        zorder=1,
    )
    ax.set_xscale("log")
    # 1,000 rather than 10^3: sizes are read off the axis as counts
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("coreset size (training examples, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    if sizes:
        # Top axis: the prune rate of each measured size (same log scale),
        # every other label when there are many.
        top = ax.twiny()
        top.set_xscale("log")
        top.set_xlim(ax.get_xlim())
        ticks = sorted(sizes)
        top.set_xticks(ticks)
        every = 1 if len(ticks) <= 8 else 2
        top.set_xticklabels(
            [f"{sizes[t]:.4g}" if i % every == 0 else "" for i, t in enumerate(ticks)],
            fontsize=8,
        )
        top.minorticks_off()
        top.set_xlabel("prune rate", fontsize=9)


def plot_score_map(
    embeddings: Embeddings,
    scores: Vector,
    path: PathLike,
    *,
    coreset: Vector | None = None,
    max_points: int = 20_000,
    projection: str = "auto",
    seed: int = 0,
    score_name: str = "ZCore score",
    color_by: str = "rank",
    title: str | None = None,
) -> Projection:
    """Draws the pool in 2-D (PCA, or UMAP when installed and `projection`
    is "auto" or "umap"), points coloured by score with a colour bar, the
    coreset ringed in red (the ZCore paper's Figure 4), to a PNG.

    Pools larger than `max_points` are drawn (and projected) from a seeded
    uniform random subsample of `max_points` rows, so the coreset keeps its
    share of the picture and a million-row pool plots in seconds; the title
    says so. Only the sampled rows of a .npy file are read.

    Args:
        embeddings: array, .npy path, or a list of them (concatenated along D).
        scores: one score per row (array or .npy, e.g. from `zcore-fast score`).
        path: the PNG to write.
        coreset: selected row indices (array, or .npy/.txt/.csv as
            `zcore-fast select` writes them); None draws no highlight.
        max_points, projection, seed: see above; projection is "auto",
            "pca" or "umap".
        score_name: what the scores are, for the colour bar.
        color_by: "rank" (default) colours by the score's percentile among
            all rows; "score" by the raw value. Rank, because ZCore scores
            are skewed: min-max normalised, a few rows near 1 leave most in
            a narrow band near the bottom (on Fashion-MNIST, 90% of rows
            below 0.17), which a raw colour scale shows as one colour.

    Returns:
        The `Projection` drawn (rows shown and their 2-D coordinates).
    """
    if color_by not in ("rank", "score"):
        raise ValueError(f"color_by must be 'rank' or 'score', got {color_by!r}")
    n = row_count(embeddings)
    s = load_scores(scores, n)
    keep = load_indices(coreset, n) if coreset is not None else None
    require_matplotlib()  # before the projection, which may take a while
    proj = project(embeddings, max_points=max_points, method=projection, seed=seed)
    in_coreset = np.zeros(n, dtype=bool)
    if keep is not None:
        in_coreset[keep] = True
    shown = in_coreset[proj.rows]
    # Draw in a random order: sorted by score, the last-drawn colour would
    # hide the rest wherever points overlap.
    order = np.random.default_rng(seed).permutation(proj.rows.size)
    if color_by == "rank":
        # percentile among all N rows, not just those drawn
        ranks = np.empty(n)
        ranks[np.argsort(s, kind="stable")] = np.arange(n)
        s = 100.0 * ranks / max(n - 1, 1)
    xy, colour = proj.coords[order], s[proj.rows][order]
    fig = _figure(7.0, 5.6)
    ax = fig.add_subplot()
    size = float(np.clip(4e4 / proj.rows.size, 1.5, 14.0))
    points = ax.scatter(
        xy[:, 0], xy[:, 1], c=colour, cmap="viridis", s=size, lw=0, alpha=0.85, rasterized=True
    )
    label = f"{score_name} percentile (100 = highest)" if color_by == "rank" else score_name
    fig.colorbar(points, ax=ax, label=label, shrink=0.9)
    if keep is not None:
        ring = proj.coords[shown]
        ax.scatter(
            ring[:, 0],
            ring[:, 1],
            s=size * 3 + 6,
            facecolors="none",
            edgecolors="#e41a1c",
            lw=0.6,
            label=f"coreset: {keep.size:,} of {n:,} rows ({keep.size / n:.1%})",
        )
        ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    ax.set_xlabel(proj.axis_labels[0])
    ax.set_ylabel(proj.axis_labels[1])
    sub = f", random {proj.rows.size:,} shown" if proj.rows.size < n else ""
    ax.set_title(title or f"Score map: {n:,} rows{sub} ({proj.method.upper()})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)
    return proj
