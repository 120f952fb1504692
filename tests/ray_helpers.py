"""The Ray test cluster: a head and a second node on 127.0.0.1 only, started
and stopped by a module-scoped fixture of each Ray test module
(`cluster = pytest.fixture(scope="module")(ray_helpers.cluster)`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

# Read by Ray when it is imported, so set first. The first keeps every node
# on the loopback address instead of the machine's interface address
# (DESIGN.md section 10); the others keep the test cluster small and quiet.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_memory_usage_threshold": "0.98",
}
os.environ.update(RAY_ENV)
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


def cluster() -> Iterator[Any]:
    """A head and a second node, 2 logical CPUs each, on 127.0.0.1 only
    (DESIGN.md section 10), with small object stores and no dashboard; every
    process stopped afterwards."""
    store = 80 * 1024 * 1024
    # Ray writes the cluster's address to $RAY_TMPDIR/ray (default /tmp/ray,
    # which a fresh machine lacks) whatever temp_dir says: keep that in a
    # directory of the test's own, short because Ray's socket paths live
    # under it and a Unix socket path has at most 107 bytes.
    temp = tempfile.mkdtemp(prefix="zrt-", dir="/tmp")
    os.makedirs(os.path.join(temp, "ray"))
    old_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "object_store_memory": store,
            "temp_dir": temp,
        },
    )
    try:
        c.add_node(num_cpus=2, node_ip_address="127.0.0.1", object_store_memory=store)
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        assert not _non_loopback_listeners(), _non_loopback_listeners()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if old_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmpdir
        shutil.rmtree(temp, ignore_errors=True)


def _non_loopback_listeners() -> list[str]:
    """Listening sockets of Ray's processes not bound to 127.0.0.1 (empty
    where `ss` is missing: nothing to check with)."""
    try:
        out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    ray_names = ("raylet", "gcs_server", "ray::", "default_worker")
    return [
        line
        for line in out.splitlines()
        if any(n in line for n in ray_names) and "127.0.0.1" not in line.split()[3]
    ]


def pool(seed: int, n: int = 1_500, d: int = 10, dtype: type = np.float32) -> np.ndarray:
    """A clustered pool of `n` rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d)) * 3
    return (centres[rng.integers(0, 6, n)] + rng.normal(size=(n, d))).astype(dtype)


def actor_pids(name: str) -> list[int]:
    """Process ids of the running Ray actors of class `name`."""
    out = subprocess.run(["pgrep", "-f", f"ray::{name}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]
