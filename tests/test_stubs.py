"""The type stubs of the native module match what it really exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zcore_fast


def test_native_stub_matches_the_extension() -> None:
    pytest.importorskip("mypy")
    env = dict(os.environ)
    # Check the package being tested, wherever it was imported from.
    env["PYTHONPATH"] = str(Path(zcore_fast.__file__).parent.parent)
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "zcore_fast._native"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
