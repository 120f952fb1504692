"""Seeded, stratified splits of labelled rows (held-out test sets, validation folds)."""

from __future__ import annotations

import numpy as np


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits row indices into (kept, held out) with about `fraction` of every
    class held out, so both parts have the class balance of the whole.

    Every class with at least two rows keeps at least one row on each side;
    a class with one row stays on the kept side. Deterministic for a seed.
    Both index arrays are sorted (int64).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        rng.shuffle(rows)
        n_held = round(fraction * rows.size)
        n_held = min(max(n_held, 1 if rows.size >= 2 else 0), rows.size - 1)
        held.append(rows[:n_held])
    out = np.sort(np.concatenate(held)).astype(np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[out] = False
    return np.flatnonzero(mask).astype(np.int64), out


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """`k` disjoint folds of row indices covering all rows, each class dealt
    round-robin across folds (after a seeded shuffle) so that every fold has
    about the class balance of the whole. Folds may be empty when there are
    fewer than `k` rows."""
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    # Start each class at a different fold: otherwise fold 0 collects the
    # leftover row of every class and the folds' sizes drift apart.
    offset = 0
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        rng.shuffle(rows)
        for j in range(k):
            folds[(j + offset) % k].append(rows[j::k])
        offset += rows.size
    return [np.sort(np.concatenate(f)).astype(np.int64) for f in folds]
