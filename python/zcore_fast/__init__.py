"""zcore-fast: zero-shot coreset selection (ZCore) with a multithreaded Rust core.

>>> import zcore_fast
>>> scores = zcore_fast.score("embeddings.npy", n_sample=100_000)  # doctest: +SKIP
>>> keep = zcore_fast.select(scores, budget=0.1)                   # doctest: +SKIP
"""

from zcore_fast._native import ZCoreError
from zcore_fast.cancel import CancelledError, cancel_on
from zcore_fast.embedding import EmbedResult, embed  # torch only when embed() runs
from zcore_fast.evaluation import EvalResults, evaluate, plot_accuracy, plot_score_map
from zcore_fast.io import as_sources, example_embeddings, save_selection
from zcore_fast.methods import METHODS, select_with
from zcore_fast.methods.zcore import DEFAULTS, ScoreReport, auto_n_sample, score, score_report
from zcore_fast.select import budget_from_prune_rate, keep_count, select

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS",
    "METHODS",
    "CancelledError",
    "EmbedResult",
    "EvalResults",
    "ScoreReport",
    "ZCoreError",
    "__version__",
    "as_sources",
    "auto_n_sample",
    "budget_from_prune_rate",
    "cancel_on",
    "embed",
    "evaluate",
    "example_embeddings",
    "keep_count",
    "plot_accuracy",
    "plot_score_map",
    "save_selection",
    "score",
    "score_report",
    "select",
    "select_with",
]
