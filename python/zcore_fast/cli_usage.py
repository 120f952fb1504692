"""The command line's usage error, in a module of its own so that cli.py and
its helper modules share one class, also under `python -m zcore_fast.cli`
(where cli.py runs as __main__ and a second copy of it would define another)."""


class UsageError(Exception):
    """A bad command line (exit status 2)."""
