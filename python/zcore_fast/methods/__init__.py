"""Coreset selection methods, one module each, behind one call.

>>> from zcore_fast.methods import METHODS, select_with
>>> keep = select_with("moderate", "emb.npy", 0.1, seed=0)  # doctest: +SKIP

zcore (the Rust engine), moderate, elfs (PyTorch, imported only when used),
ccs and random; kmeans is the clustering moderate and elfs share.
"""

from zcore_fast.methods.base import Selection
from zcore_fast.methods.registry import METHODS, method_options, run_method, select_with
from zcore_fast.methods.zcore import DEFAULTS, score

__all__ = [
    "DEFAULTS",
    "METHODS",
    "Selection",
    "method_options",
    "run_method",
    "score",
    "select_with",
]
