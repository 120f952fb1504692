"""Coreset scoring methods. Each module has one method behind the same shape
of interface: a scoring function over embeddings, then `zcore_fast.select`."""

from zcore_fast.methods.zcore import DEFAULTS, score

__all__ = ["DEFAULTS", "score"]
