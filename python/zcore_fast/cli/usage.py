"""Pieces of command-line parsing that the command modules share: the
usage error (exit status 2) and flag value types."""

from __future__ import annotations

import argparse


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
