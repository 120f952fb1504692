"""What the Python fuzz targets share: atheris when it is installed (the
`fuzz` extra), and otherwise a plain replay of the inputs named on the
command line, so a target still runs its corpus without it."""

from __future__ import annotations

import ast
import contextlib
import inspect
import json.decoder
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

try:
    import atheris
except ImportError:  # replay only
    atheris = None


@contextlib.contextmanager
def instrumented(fuzzing: bool) -> Iterator[None]:
    """When `fuzzing` (the target runs as a script) and atheris is
    installed, imports inside it get coverage instrumentation: the package,
    and the pure-Python parsers it hands untrusted text to
    (`ast.literal_eval`, json's decoder), so the fuzzer also learns their
    branches. Imported by the tests, nothing is instrumented."""
    if atheris is None or not fuzzing:
        yield
        return
    with atheris.instrument_imports(include=["zcore_fast"]):
        yield
    for module in (ast, json.decoder):
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                setattr(module, name, atheris.instrument_func(value))


def main(check: Callable[[bytes], None], argv: list[str]) -> None:
    """Fuzzes `check` with libFuzzer's command line (`argv`), or without
    atheris replays every file of the directories and files in `argv`."""
    if atheris is not None:
        atheris.Setup(argv, check)
        atheris.Fuzz()
        return
    print("atheris is not installed (pip install '.[fuzz]'): replaying the corpus only")
    files = [
        f
        for arg in argv[1:]
        if not arg.startswith("-")
        for f in (sorted(Path(arg).iterdir()) if Path(arg).is_dir() else [Path(arg)])
    ]
    for f in files:
        check(f.read_bytes())
    print(f"replayed {len(files)} inputs")
    sys.exit(0)
