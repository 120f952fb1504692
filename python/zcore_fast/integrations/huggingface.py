"""Hugging Face `datasets`: a coreset of a `datasets.Dataset` with an
embedding column.

The column is read through the dataset's Arrow table (memory-mapped from
its cache files), viewed as an (N, D) matrix without a Python object per
row; `datasets` itself is never imported here, the dataset passed in is
used as it is.

    >>> from zcore_fast.integrations.huggingface import select_coreset
    >>> result = select_coreset(ds, 0.1, column="embedding")  # doctest: +SKIP
    >>> result.coreset      # ds.select(indices): the coreset, best first
    >>> result.scored       # ds.add_column("zcore_score", scores)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zcore_fast.methods.base import ProgressFn, Selection
from zcore_fast.methods.registry import run_method
from zcore_fast.select import Budget


class Coreset(NamedTuple):
    """A dataset's coreset, its scores, and the selection behind them."""

    #: `dataset.select(indices)`: the coreset rows, in the method's order
    #: (highest score first for ZCore).
    coreset: Any
    #: `dataset.add_column(score_field, scores)`, or None for a method
    #: without per-row scores (random).
    scored: Any
    #: Indices, scores and every parameter used (`zcore_fast.methods.base`).
    selection: Selection


def select_coreset(
    dataset: Any,
    budget: Budget,
    *,
    method: str = "zcore",
    column: str | None = None,
    score_field: str = "zcore_score",
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Coreset:
    """Selects a coreset of a Hugging Face `datasets.Dataset`.

    Args:
        dataset: a `datasets.Dataset` (not a DatasetDict: pick a split, e.g.
            `ds["train"]`) with a list<float> embedding column.
        budget: fraction in (0, 1] or row count, as `zcore_fast.select`.
        method: any of `zcore_fast.METHODS`.
        column: the embedding column; default "embedding", "embeddings", ...
            or the dataset's only list column.
        score_field: the name of the score column added to `scored`; it must
            not exist yet.
        seed, threads, progress, **options: as `zcore_fast.select_with`
            (e.g. n_sample=, redund_nn= for ZCore).

    Returns:
        A `Coreset`: `coreset` = dataset.select(indices), `scored` =
        dataset.add_column(score_field, scores) (None without scores), and
        the `selection`.
    """
    if type(dataset).__name__ == "DatasetDict":
        raise TypeError(
            f"a DatasetDict holds several splits ({', '.join(dataset)}); pass one, e.g. "
            "dataset['train']"
        )
    if not hasattr(dataset, "select") or not hasattr(dataset, "add_column"):
        raise TypeError(
            f"dataset is a {type(dataset).__name__}; pass a Hugging Face datasets.Dataset"
        )
    if score_field in dataset.column_names:
        raise ValueError(
            f"the dataset already has a column {score_field!r}; pass another score_field, or "
            f"dataset.remove_columns({score_field!r}) first"
        )
    selection = run_method(
        method,
        dataset,
        budget,
        seed=seed,
        threads=threads,
        progress=progress,
        column=column,
        **options,
    )
    coreset = dataset.select(selection.indices)
    scored = None
    if selection.scores is not None:
        scored = dataset.add_column(score_field, selection.scores.tolist())
    return Coreset(coreset, scored, selection)
