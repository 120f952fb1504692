"""Kill-9 testing of commands that take seconds to import (torch): a fork
server imports them once, then forks one child per command line, so a test
can afford dozens of kill points. The child runs `zcore_fast.cli.main`
exactly as the console script does; only the import is shared.

Two ways to choose a kill point:
- after a delay (SIGKILL sent by the test), as tests/test_crash_kill.py does;
- at the k-th durability call (os.fsync, os.replace, os.rename, os.unlink),
  the child SIGKILLs itself just before making it: every step of a
  write-then-rename protocol gets its own kill point, which random delays
  hit only by luck. The code under test runs unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

_SERVER = r"""
import json, os, resource, signal, sys, traceback
sys.path[:0] = json.loads(sys.argv[1])
for name in json.loads(sys.argv[2]):
    __import__(name)
exec(sys.argv[3])
from zcore_fast.cli import main

HOOKED = ("fsync", "replace", "rename", "unlink")


def hook(kill_at, counter):
    calls = [0]
    for name in HOOKED:
        real = getattr(os, name)

        def wrapper(*args, _real=real, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(*args, **kwargs)

        setattr(os, name, wrapper)
    return calls


for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(req["cwd"])
            if req["fsize"]:  # a write past it fails with EFBIG instead of a signal
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
            calls = hook(req["kill_at"], req["count"]) if req["kill_at"] or req["count"] else None
            try:
                code = main(req["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            if calls is not None and req["count"]:
                with open(req["count"], "w") as f:
                    f.write(str(calls[0]))
        except BaseException:
            traceback.print_exc()
            code = 99
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class ForkServer:
    """A process that has imported `preload` (and run `setup`) once and runs
    each command line in a fresh fork of itself."""

    def __init__(self, preload: Sequence[str], setup: str = "", paths: Sequence[str] = ()):
        extra = [str(Path(__file__).parent), *paths]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, json.dumps(extra), json.dumps(list(preload)), setup],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid: int | None = None

    def start(
        self,
        argv: Sequence[str],
        cwd: Path,
        *,
        kill_at: int = 0,
        count: Path | None = None,
        fsize: int = 0,
        log: Path | None = None,
    ) -> int:
        """Starts `zcore-fast argv` in `cwd`; its output goes to `log`
        (default cwd/run.log). With `kill_at` = k it kills itself at its k-th
        durability call; with `count`, it writes how many it made there; with
        `fsize`, no file it writes may grow past that many bytes
        (RLIMIT_FSIZE). Returns its pid."""
        request = {
            "argv": list(argv),
            "cwd": str(cwd),
            "log": str(log or cwd / "run.log"),
            "kill_at": kill_at,
            "count": str(count) if count else "",
            "fsize": fsize,
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        self.pid = int(self.proc.stdout.readline())
        return self.pid

    def wait(self) -> int:
        """The exit status of the last command, -9 when it was killed."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        self.pid = None
        return int(line)

    def run(self, argv: Sequence[str], cwd: Path, **kwargs: object) -> int:
        """Runs a command to its end; returns its exit status."""
        self.start(argv, cwd, **kwargs)  # type: ignore[arg-type]
        return self.wait()

    def kill_after(self, argv: Sequence[str], cwd: Path, delay: float) -> int:
        """Starts a command and SIGKILLs it after `delay` seconds (unless it
        ended first); returns its exit status."""
        pid = self.start(argv, cwd)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - reaped already
            pass
        return self.wait()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
