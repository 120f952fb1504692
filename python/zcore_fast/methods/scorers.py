"""Per-row scores by name (what CCS stratifies), and the options each takes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from zcore_fast.methods import elfs, moderate
from zcore_fast.methods import zcore as zcore_method
from zcore_fast.methods.base import ProgressFn
from zcore_fast.methods.classes import Labels
from zcore_fast.methods.rows import Rows

#: ZCore's parameters (besides seed, threads, progress), by the paper's names.
ZCORE_OPTIONS = ("n_sample", "sample_dim", "redund_nn", "redund_exp", "rand_init")
#: Where ZCore runs (`zcore_fast.score`'s keywords): they change no score.
ZCORE_RUN_OPTIONS = (
    "backend",
    "device",
    "ray_address",
    "workers",
    "sharding",
    "cache",
    "cache_dir",
)
#: Options of scores computed over classes (labels or k-means clusters).
CLASS_OPTIONS = ("clusters", "max_iter")
#: Options of the proxy-dynamics scores.
DYNAMICS_OPTIONS = (*CLASS_OPTIONS, "epochs", "batch_size", "lr", "hidden", "device")

#: Option names of every score.
SCORE_OPTIONS: dict[str, tuple[str, ...]] = {
    "zcore": (*ZCORE_OPTIONS, *ZCORE_RUN_OPTIONS),
    "moderate": CLASS_OPTIONS,
    "aum": DYNAMICS_OPTIONS,
    "forgetting": DYNAMICS_OPTIONS,
    "el2n": DYNAMICS_OPTIONS,
}


def check_options(
    where: str, given: Mapping[str, Any] | Iterable[str], allowed: Iterable[str]
) -> None:
    """Refuses option names not in `allowed`, listing the valid ones."""
    allowed = sorted(set(allowed))
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"unknown option(s) for {where}: {', '.join(unknown)}; valid options: {valid}"
        )


def refuse_labels(where: str, labels: object) -> None:
    """Label-free methods refuse labels rather than silently ignore them."""
    if labels is not None:
        raise ValueError(
            f"{where} does not use labels; call it without labels (moderate, elfs and ccs over "
            "moderate/aum/forgetting/el2n scores use them)"
        )


def score_rows(
    name: str,
    rows: Rows,
    *,
    seed: int = 0,
    labels: Labels | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """(one score per row, the score's name, parameters used) for score `name`:
    "zcore", "moderate" (distance to the class median), "aum", "forgetting"
    or "el2n" (proxy training dynamics)."""
    if name not in SCORE_OPTIONS:
        raise ValueError(f"unknown score {name!r}; use one of {', '.join(SCORE_OPTIONS)}")
    check_options(f"the {name} score", options, SCORE_OPTIONS[name])
    if name == "zcore":
        refuse_labels("the zcore score", labels)
        values = zcore_method.score(
            rows.sources, seed=seed, threads=threads, progress=progress, **options
        )
        defaults = {k: zcore_method.DEFAULTS[k] for k in ZCORE_OPTIONS}
        return values, "zcore", {**defaults, **options}
    if name == "moderate":
        dist, info = moderate.scores(
            rows, labels=labels, seed=seed, threads=threads, progress=progress, **options
        )
        return dist, "moderate_distance", info
    values, info = elfs.dynamics_scores(
        rows, name, labels=labels, seed=seed, threads=threads, progress=progress, **options
    )
    return values, name, info
