"""Pieces of command-line parsing that cli.py and its helper modules share:
the usage error, in a module of its own so that there is one class also
under `python -m zcore_fast.cli` (where cli.py runs as __main__ and a second
copy of it would define another), and flag value types."""

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
