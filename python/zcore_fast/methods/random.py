"""Random selection: the baseline every comparison needs."""

from __future__ import annotations

import numpy as np

from zcore_fast.cancel import check_cancelled
from zcore_fast.io import Embeddings
from zcore_fast.methods.base import Selection, rng_for, seed_int
from zcore_fast.methods.rows import Rows, open_rows
from zcore_fast.select import Budget, keep_count

#: Up to this many rows the whole pool is permuted, so that for one seed a
#: smaller budget's coreset is a prefix of a larger one's (nested coresets).
#: Above it (512 MB of int64) a k-row sample is drawn directly.
PERMUTE_MAX = 1 << 26


def sample(n: int, budget: Budget, *, seed: int = 0) -> np.ndarray:
    """`budget` of `n` row indices drawn uniformly without replacement.

    Returns int64 indices in the order drawn (a uniformly random order).
    For n <= PERMUTE_MAX the result is the first keep_count(budget, n) entries
    of one seeded permutation, so coresets for growing budgets are nested.
    """
    keep = keep_count(budget, n)
    rng = rng_for(seed_int(seed), 6)
    if n <= PERMUTE_MAX:
        return rng.permutation(n)[:keep].astype(np.int64)
    return rng.choice(n, size=keep, replace=False, shuffle=True).astype(np.int64)


def run(embeddings: Embeddings | Rows, budget: Budget, *, seed: int = 0) -> Selection:
    """Random selection with its parameters; see `select`."""
    check_cancelled()  # instant, but a cancelled caller expects no result
    # Only the row count is needed: shapes from the headers, no pass over values.
    rows = open_rows(embeddings, check_finite=False)
    return Selection("random", sample(rows.n, budget, seed=seed), params={"seed": seed})


def select(embeddings: Embeddings | Rows, budget: Budget, *, seed: int = 0) -> np.ndarray:
    """Seeded uniform random coreset of `embeddings`' rows.

    Args:
        embeddings: what `zcore_fast.score` accepts (only the row count is read).
        budget: fraction in (0, 1] or row count (as `zcore_fast.select`).
        seed: same seed, same indices; different seeds, independent draws.

    Returns:
        int64 indices in random order; see `sample` for nesting across budgets.
    """
    return run(embeddings, budget, seed=seed).indices
