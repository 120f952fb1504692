"""Pieces of command-line parsing that the command modules share: the
usage error (exit status 2) and flag value types."""

from __future__ import annotations

import argparse
import math


class UsageError(Exception):
    """A bad command line (exit status 2)."""


def sample_count(text: str) -> int | str:
    """The --n-sample flag: a positive count or "auto"."""
    if text == "auto":
        return text
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a count or "auto": {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def positive_int(text: str) -> int:
    """A flag that counts something (--threads, --clusters, ...): >= 1.
    Checked while parsing, so a bad value is a usage error (exit 2) like
    any other bad flag, before any input is read."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A seed or a width that may be 0: >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def fraction(text: str) -> float:
    """A share of the rows dropped (--beta, --mis-ratio): in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (--redund-exp)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value
