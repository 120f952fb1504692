"""zcore-fast: zero-shot coreset selection (ZCore) with a multithreaded Rust core.

>>> import zcore_fast
>>> scores = zcore_fast.score("embeddings.npy", n_sample=100_000)  # doctest: +SKIP
>>> keep = zcore_fast.select(scores, budget=0.1)                   # doctest: +SKIP
"""

from zcore_fast._native import ZCoreError
from zcore_fast.io import as_sources, example_embeddings, save_selection
from zcore_fast.methods.zcore import DEFAULTS, score
from zcore_fast.select import budget_from_prune_rate, keep_count, select

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS",
    "ZCoreError",
    "__version__",
    "as_sources",
    "budget_from_prune_rate",
    "example_embeddings",
    "keep_count",
    "save_selection",
    "score",
    "select",
]
