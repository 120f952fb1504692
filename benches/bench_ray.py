"""backend="ray" on a loopback Ray cluster this script starts and stops.

Two figures, each against a reference measured in the same run (issue 15,
"Performance"):

    python benches/bench_ray.py                     # both, full size (see the defaults below)
    python benches/bench_ray.py --overhead          # Ray overhead only
    python benches/bench_ray.py --scaling           # 1 -> 2 workers only
    python benches/bench_ray.py --smoke             # both at toy size, < 2 minutes
    python benches/bench_ray.py --json ray.json     # every figure to a file as well

1. **Ray overhead** (`--overhead`): a one-node cluster of 2 CPUs; backend="ray"
   with workers=1 (one actor, 2 CPUs, rayon with 2 threads) against
   backend="cpu" with threads=2 in this process, at CIFAR scale: N = 50,000,
   D = 1,280 float16 (a synthetic mixture .npy, benches/_scale_data.py),
   --samples (10^6) samples, default cache mode (this pool is prepared in
   memory by each call). --repeats (3) interleaved pairs (the order swaps
   every repeat); the figure is the ratio of the medians. Target: ray within
   10 % of cpu.
2. **Scaling efficiency** (`--scaling`): a two-node cluster, 1 CPU per node;
   backend="ray" with workers=1 (1 CPU) and workers=2 (1 CPU each, one per
   node) at ImageNet scale: N = --rows (1,281,167), D = 1,280 float16, from
   the column cache (built once, by the first call, and not timed),
   --scaling-samples (10^5) samples, --scaling-repeats (1) interleaved
   pairs. Efficiency = t1 / (2 x t2); target >= 0.85. Each worker builds the
   band indexes of the dimensions its samples use (about 1,280 of them at
   this N, whatever its share of the samples), a fixed cost per worker that
   sharding does not divide: the efficiency rises with the sample count. So
   the same pair also runs at --fixed-samples (10^4), and from the two sizes
   each worker count's wall time is split into a fixed cost and a cost per
   sample: the marginal efficiency c1 / (2 x c2) is what a run of many more
   samples approaches (projected at 10^6 and 10^7 samples).

Correctness in the same run: every Ray run's scores are compared (SHA-256 of
the float32 scores) with backend="cpu" on the same pool and sample count. At
CIFAR scale the cpu runs are the timed reference themselves; at ImageNet
scale one cpu run (threads=2, all of this machine) with the same samples is
timed too (`--cpu-check full`, default; its time is the one-process figure
the two workers can be compared with), or with --cpu-check-samples samples
against two extra Ray runs (`--cpu-check subset`), or skipped (`none`; then
the Ray runs are still compared with each other).

The cluster is started like tests/test_ray.py: ray.cluster_utils.Cluster on
127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set before Ray is
imported), token auth off, no dashboard, a small object store, its temp dir
under /tmp (removed afterwards). Every process the cluster started is
checked to be gone at the end, and the script says so. The machine is
shared (2 cores): the CPU model and the load averages before and after
every measurement are printed with it.

Pools go to --workdir (default /tmp/zcore-bench, shared with bench_scale.py
and reused); the ImageNet-scale pool takes 3.3 GB and its column cache
about as much again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# Read by Ray when it is imported, so set before anything imports it (the
# first keeps every node on 127.0.0.1: DESIGN.md section 10).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_memory_usage_threshold": "0.98",
}
os.environ.update(RAY_ENV)

import numpy as np  # noqa: E402

_PYTHON = Path(__file__).resolve().parent.parent / "python"
if any(p.suffix in (".so", ".pyd") for p in (_PYTHON / "zcore_fast").glob("_native*")):
    sys.path.insert(0, str(_PYTHON))
import zcore_fast  # noqa: E402
from _scale_data import Progress, count, ensure_mixture, log, sci, size  # noqa: E402

CIFAR = (50_000, 1_280)
IMAGENET_ROWS = 1_281_167
OVERHEAD_TARGET = 1.10
EFFICIENCY_TARGET = 0.85
OBJECT_STORE = 256 * 1024 * 1024


def load() -> float:
    return os.getloadavg()[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def digest(scores: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(scores))).hexdigest()


# --- the cluster --------------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    """Every live process below `root` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out: set[int] = set()
    frontier = [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in out]
        out.update(kids)
        frontier.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class LoopbackCluster:
    """A Ray cluster on 127.0.0.1 of nodes with the given CPU counts (the
    first is the head), the driver connected; `close()` stops it and
    returns the processes it started that are still alive (none, normally)."""

    def __init__(self, cpus: list[int]) -> None:
        import ray
        from ray.cluster_utils import Cluster

        self.ray = ray
        self.before = _descendants(os.getpid())
        self.temp = tempfile.mkdtemp(prefix="zrb-", dir="/tmp")
        # Ray writes the address file to $RAY_TMPDIR/ray whatever temp_dir
        # says; /tmp/ray need not exist (tests/test_ray.py's fixture).
        os.makedirs(os.path.join(self.temp, "ray"))
        os.environ["RAY_TMPDIR"] = self.temp
        start = time.perf_counter()
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": cpus[0],
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                "object_store_memory": OBJECT_STORE,
                "temp_dir": self.temp,
            },
        )
        try:
            for c in cpus[1:]:
                self.cluster.add_node(
                    num_cpus=c, node_ip_address="127.0.0.1", object_store_memory=OBJECT_STORE
                )
            ray.init(address=self.cluster.address, logging_level="ERROR", log_to_driver=False)
            self.cluster.wait_for_nodes()
        except BaseException:
            self.close()
            raise
        self.seconds = time.perf_counter() - start
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.nodes = [
            {"ip": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0)} for n in nodes
        ]
        self.address = self.cluster.address

    def close(self) -> list[int]:
        started = _descendants(os.getpid()) - self.before
        try:
            self.ray.shutdown()
        finally:
            self.cluster.shutdown()
        deadline = time.monotonic() + 20
        left = [p for p in started if _alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for p in left if _alive(p)]
        shutil.rmtree(self.temp, ignore_errors=True)
        self.left = left
        self.started = len(started)
        return left


# --- one timed call ------------------------------------------------------------------------------


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """(name, user + system CPU seconds) of this process and every process
    below it (the cluster's, which Cluster starts as children)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for pid in _descendants(os.getpid()) | {os.getpid()}:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_split(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds spent during a call by this process ("driver") and by the
    other processes alive before and after it, by name. Ray's scoring
    actor is started and killed by the call, so it is not in either
    snapshot (an actor not yet gone is left out by name)."""
    out: dict[str, float] = {}
    for pid, (name, t) in after.items():
        if pid not in before or name.startswith("ray::_Worker"):
            continue
        key = "driver" if pid == os.getpid() else name
        out[key] = out.get(key, 0.0) + t - before[pid][1]
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def run_call(label: str, path: Path, samples: int, backend: str, **kw: Any) -> dict:
    """One score_report call, timed from the caller's side."""
    progress = Progress(label)
    before = load()
    cpu_before = cpu_seconds()
    t0 = time.perf_counter()
    try:
        report = zcore_fast.score_report(
            str(path), n_sample=samples, backend=backend, seed=0, progress=progress, **kw
        )
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    cpu = cpu_split(cpu_before, cpu_seconds())
    out = {
        "label": label,
        "backend": backend,
        "samples": samples,
        "wall_seconds": wall,
        "engine_seconds": report.seconds,
        "cache_seconds": getattr(report, "cache_seconds", None),
        "sha256": digest(report.scores),
        "convergence": report.convergence,
        "parameters": {k: v for k, v in report.parameters.items() if k != "ray_address"},
        "load_average": [before, load()],
        "cpu_seconds": cpu,
    }
    others = sum(v for k, v in cpu.items() if k != "driver")
    log(
        f"{label}: {wall:.2f} s wall ({report.seconds:.2f} s scoring), "
        f"load {before:.2f} -> {out['load_average'][1]:.2f}; CPU s: driver "
        f"{cpu.get('driver', 0.0):.1f}, other cluster processes {others:.1f}"
    )
    return out


def interleaved(
    repeats: int, a: Callable[[int], dict], b: Callable[[int], dict]
) -> tuple[list[dict], list[dict]]:
    """`repeats` pairs of calls, a-b then b-a alternately (drift of a shared
    machine falls on both)."""
    ra, rb = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ra.append(a(i))
            rb.append(b(i))
        else:
            rb.append(b(i))
            ra.append(a(i))
    return ra, rb


def median(calls: list[dict], key: str = "wall_seconds") -> float:
    return statistics.median(c[key] for c in calls)


def walls(calls: list[dict]) -> str:
    return ", ".join(f"{c['wall_seconds']:.2f}" for c in calls)


def cpu_of(calls: list[dict], driver: bool) -> str:
    vals = [sum(v for k, v in c["cpu_seconds"].items() if (k == "driver") == driver) for c in calls]
    return ", ".join(f"{v:.1f}" for v in vals)


def loads(calls: list[dict]) -> str:
    vals = [v for c in calls for v in c["load_average"]]
    return f"{min(vals):.2f}-{max(vals):.2f}"


# --- 1. overhead ---------------------------------------------------------------------------------


def run_overhead(args: argparse.Namespace) -> dict:
    n, d = args.cifar_rows, args.dims or CIFAR[1]
    path, gen = ensure_mixture(args.workdir, n, d, seed=args.seed, log=log)
    if gen is not None:
        log(f"overhead: generated {path.name} in {gen:.1f} s")
    s, kw = args.samples, {"redund_nn": args.redund_nn}
    log("overhead: starting a one-node cluster (2 CPUs) on 127.0.0.1")
    cl = LoopbackCluster([2])
    try:
        log(f"overhead: cluster up in {cl.seconds:.1f} s: {cl.nodes}")
        # Untimed warm-up of both paths: the file in the page cache, Ray's
        # worker processes started and the actor class exported once.
        warm = min(s, 2_000)
        run_call("overhead warm-up cpu", path, warm, "cpu", threads=2, **kw)
        run_call("overhead warm-up ray", path, warm, "ray", workers=1, **kw)
        cpu, ray_ = interleaved(
            args.repeats,
            lambda i: run_call(f"overhead cpu #{i + 1}", path, s, "cpu", threads=2, **kw),
            lambda i: run_call(f"overhead ray #{i + 1}", path, s, "ray", workers=1, **kw),
        )
    finally:
        left = cl.close()
    t_cpu, t_ray = median(cpu), median(ray_)
    identical = len({c["sha256"] for c in cpu + ray_}) == 1
    fig = {
        "n": n,
        "d": d,
        "dtype": "float16",
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "samples": s,
        "redund_nn": args.redund_nn,
        "cluster": {"nodes": cl.nodes, "start_seconds": cl.seconds},
        "cpu": cpu,
        "ray": ray_,
        "cpu_median_seconds": t_cpu,
        "ray_median_seconds": t_ray,
        "ratio": t_ray / t_cpu,
        "overhead_seconds": t_ray - t_cpu,
        "target_ratio": OVERHEAD_TARGET,
        "met": t_ray / t_cpu <= OVERHEAD_TARGET,
        "identical_scores": identical,
        "processes_left": left,
        "processes_started": cl.started,
    }
    print(
        f"\n## Ray overhead: N = {n:,}, D = {d:,}, float16 .npy ({size(fig['file_bytes'])}), "
        f"{s:,} samples, redund_nn {args.redund_nn}\n"
        f"cluster: one node, 2 CPUs, 127.0.0.1 (up in {cl.seconds:.1f} s); "
        f"ray = backend='ray', workers=1 (one actor, 2 CPUs); cpu = backend='cpu', threads=2, "
        f"this process; {args.repeats} interleaved pairs after an untimed warm-up of each\n"
    )
    print(
        "| backend | wall (s), each | median (s) | us/sample | load avg (min-max) "
        "| driver CPU s | other cluster processes' CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, calls, t in (("cpu, threads=2", cpu, t_cpu), ("ray, workers=1", ray_, t_ray)):
        print(
            f"| {name} | {walls(calls)} | {t:.2f} | {t / s * 1e6:.1f} | {loads(calls)} "
            f"| {cpu_of(calls, True)} | {cpu_of(calls, False)} |"
        )
    print(
        "\n(CPU seconds during each call; the Ray actor that scores is started and killed by "
        "the call and not counted; 'driver' is this process, which scores itself with "
        "backend='cpu')"
    )
    print(
        f"\nray / cpu = {fig['ratio']:.3f} ({fig['overhead_seconds']:+.2f} s per call) "
        f"[target <= {OVERHEAD_TARGET:.2f}: {'met' if fig['met'] else 'NOT met'}"
        f"{', smoke size: not judged' if args.smoke else ''}]; scores of all "
        f"{len(cpu) + len(ray_)} calls bit-identical: {'yes' if identical else 'NO'}; "
        f"cluster processes left running after shutdown: {len(left)} of {cl.started}"
    )
    return fig


# --- 2. scaling ----------------------------------------------------------------------------------


def run_scaling(args: argparse.Namespace) -> dict:
    n, d = args.rows, args.dims or 1280
    path, gen = ensure_mixture(args.workdir, n, d, seed=args.seed, log=log)
    if gen is not None:
        log(f"scaling: generated {path.name} in {gen:.1f} s")
    cache_dir = args.workdir / "cache-ray" / path.stem
    s = args.scaling_samples
    kw: dict[str, Any] = {"redund_nn": args.redund_nn, "cache": "always", "cache_dir": cache_dir}
    log("scaling: starting a two-node cluster (1 CPU each) on 127.0.0.1")
    cl = LoopbackCluster([1, 1])
    check: dict[str, Any] = {"mode": args.cpu_check}
    try:
        log(f"scaling: cluster up in {cl.seconds:.1f} s: {cl.nodes}")
        # Builds the column cache (timed apart, not part of any figure) and
        # starts Ray's worker processes once.
        first = run_call("scaling cache build + warm-up", path, min(s, 200), "cpu", threads=2, **kw)
        run_call("scaling warm-up ray", path, min(s, 200), "ray", workers=2, **kw)
        check["cache_seconds"] = first["cache_seconds"]
        one, two = interleaved(
            args.scaling_repeats,
            lambda i: run_call(f"scaling ray workers=1 #{i + 1}", path, s, "ray", workers=1, **kw),
            lambda i: run_call(f"scaling ray workers=2 #{i + 1}", path, s, "ray", workers=2, **kw),
        )
        # The same pair at a small sample count: wall = fixed + samples x
        # marginal cost, solved per worker count from the two sizes.
        small1, small2 = interleaved(
            1,
            lambda i: run_call("fixed-cost ray workers=1", path, args.fixed_samples, "ray",
                               workers=1, **kw),
            lambda i: run_call("fixed-cost ray workers=2", path, args.fixed_samples, "ray",
                               workers=2, **kw),
        )  # fmt: skip
        ray_digests = {c["sha256"] for c in one + two}
        small_identical = len({small1[0]["sha256"], small2[0]["sha256"]}) == 1
        if args.cpu_check == "full":
            cpu = run_call("scaling cpu threads=2", path, s, "cpu", threads=2, **kw)
            check.update(cpu=cpu, samples=s, identical=ray_digests == {cpu["sha256"]})
        elif args.cpu_check == "subset":
            c = args.cpu_check_samples
            cpu = run_call("check cpu threads=2", path, c, "cpu", threads=2, **kw)
            r1 = run_call("check ray workers=1", path, c, "ray", workers=1, **kw)
            r2 = run_call("check ray workers=2", path, c, "ray", workers=2, **kw)
            check.update(
                cpu=cpu,
                ray=[r1, r2],
                samples=c,
                identical=len({cpu["sha256"], r1["sha256"], r2["sha256"]}) == 1,
            )
    finally:
        left = cl.close()
    t1, t2 = median(one), median(two)
    eff = t1 / (2 * t2)
    fs, ts1, ts2 = args.fixed_samples, small1[0]["wall_seconds"], small2[0]["wall_seconds"]
    c1, c2 = (t1 - ts1) / (s - fs), (t2 - ts2) / (s - fs)
    model = {
        "fixed_samples": fs,
        "t1_small_seconds": ts1,
        "t2_small_seconds": ts2,
        "marginal_seconds_per_sample_1": c1,
        "marginal_seconds_per_sample_2": c2,
        "fixed_seconds_1": ts1 - fs * c1,
        "fixed_seconds_2": ts2 - fs * c2,
        "marginal_efficiency": c1 / (2 * c2),
        "small_runs": small1 + small2,
        "small_runs_identical": small_identical,
    }
    model["projected_efficiency"] = {
        str(n): (model["fixed_seconds_1"] + n * c1) / (2 * (model["fixed_seconds_2"] + n * c2))
        for n in (10**6, 10**7)
    }
    fig = {
        "n": n,
        "d": d,
        "dtype": "float16",
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "cache_dir": str(cache_dir),
        "samples": s,
        "redund_nn": args.redund_nn,
        "cluster": {"nodes": cl.nodes, "start_seconds": cl.seconds},
        "workers_1": one,
        "workers_2": two,
        "t1_median_seconds": t1,
        "t2_median_seconds": t2,
        "efficiency": eff,
        "target_efficiency": EFFICIENCY_TARGET,
        "met": eff >= EFFICIENCY_TARGET,
        "ray_runs_identical": len(ray_digests) == 1 and small_identical,
        "model": model,
        "cpu_check": check,
        "processes_left": left,
        "processes_started": cl.started,
    }
    print(
        f"\n## Scaling 1 -> 2 workers: N = {n:,}, D = {d:,}, float16 .npy "
        f"({size(fig['file_bytes'])}) from its column cache, {s:,} samples, "
        f"redund_nn {args.redund_nn}\n"
        f"cluster: two nodes of 1 CPU each, 127.0.0.1 (up in {cl.seconds:.1f} s); "
        + (
            f"cache build {check['cache_seconds']:.1f} s (first call, not timed); "
            if check.get("cache_seconds")
            else f"cache reused ({cache_dir}); "
        )
        + f"{args.scaling_repeats} interleaved pair(s) after an untimed warm-up\n"
    )
    print("| run | wall (s), each | median (s) | us/sample | load avg (min-max) |")
    print("|---|---|---|---|---|")
    rows = [("ray, workers=1 (1 CPU)", one, t1), ("ray, workers=2 (1 CPU each)", two, t2)]
    if args.cpu_check == "full":
        rows.append(("cpu, threads=2 (one process)", [check["cpu"]], check["cpu"]["wall_seconds"]))
    for name, calls, t in rows:
        print(f"| {name} | {walls(calls)} | {t:.2f} | {t / s * 1e6:.1f} | {loads(calls)} |")
    print(
        f"\nefficiency t1 / (2 t2) = {t1:.2f} / (2 x {t2:.2f}) = {eff:.3f} "
        f"[target >= {EFFICIENCY_TARGET:.2f}: {'met' if fig['met'] else 'NOT met'}"
        f"{', smoke size: not judged' if args.smoke else ''}]"
    )
    print(
        f"fixed cost and marginal cost (the same pair at {fs:,} samples: {ts1:.2f} s and "
        f"{ts2:.2f} s): workers=1 {model['fixed_seconds_1']:.1f} s + {c1 * 1e6:.0f} us/sample; "
        f"workers=2 {model['fixed_seconds_2']:.1f} s + {c2 * 1e6:.0f} us/sample; marginal "
        f"efficiency c1 / (2 c2) = {model['marginal_efficiency']:.3f}; projected efficiency "
        + ", ".join(f"{v:.3f} at {sci(int(k))}" for k, v in model["projected_efficiency"].items())
        + " samples"
    )
    if args.cpu_check == "full":
        tc = check["cpu"]["wall_seconds"]
        print(
            f"two 1-CPU workers against one 2-thread process: {t2:.2f} / {tc:.2f} = {t2 / tc:.3f}"
        )
    print(
        f"Ray runs' scores identical to each other: {'yes' if fig['ray_runs_identical'] else 'NO'}"
        + (
            ""
            if args.cpu_check == "none"
            else f"; identical to backend='cpu' ({check['samples']:,} samples): "
            f"{'yes' if check['identical'] else 'NO'}"
        )
        + f"; cluster processes left running after shutdown: {len(left)} of {cl.started}"
    )
    return fig


# --- main ----------------------------------------------------------------------------------------


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--overhead", action="store_true", help="only the Ray overhead figure")
    ap.add_argument("--scaling", action="store_true", help="only the 1 -> 2 workers figure")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="toy sizes (under 2 minutes): 2 x 10^4 samples at CIFAR scale, 10^5 rows and "
        "3,000 samples for scaling, 1 repeat; explicit size flags still win",
    )
    ap.add_argument("--samples", type=count, help="overhead: samples per call (default 10^6)")
    ap.add_argument("--repeats", type=int, help="overhead: interleaved pairs (default 3)")
    ap.add_argument("--cifar-rows", type=count, default=CIFAR[0], help="overhead: N (50,000)")
    ap.add_argument("--rows", type=count, help=f"scaling: N (default {IMAGENET_ROWS:,})")
    ap.add_argument(
        "--scaling-samples", type=count, help="scaling: samples per call (default 10^5)"
    )
    ap.add_argument("--scaling-repeats", type=int, help="scaling: interleaved pairs (default 1)")
    ap.add_argument(
        "--fixed-samples",
        type=count,
        help="scaling: samples of the extra pair that separates the fixed cost per call "
        "from the cost per sample (default 10^4: every dimension used by each worker)",
    )
    ap.add_argument(
        "--cpu-check",
        choices=("full", "subset", "none"),
        default="full",
        help="scaling: compare with backend='cpu' at the same sample count (full, timed), "
        "at --cpu-check-samples (subset) or not (none); default full",
    )
    ap.add_argument("--cpu-check-samples", type=count, default=2_000)
    ap.add_argument("--dims", type=int, help="D of both pools (default 1,280)")
    ap.add_argument("--redund-nn", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated pools")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/zcore-bench"))
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    args = ap.parse_args()
    if not (args.overhead or args.scaling):
        args.overhead = args.scaling = True
    smoke = {"samples": 20_000, "repeats": 1, "rows": 100_000, "scaling_samples": 3_000,
             "scaling_repeats": 1, "fixed_samples": 600}  # fmt: skip
    full = {"samples": 10**6, "repeats": 3, "rows": IMAGENET_ROWS, "scaling_samples": 10**5,
            "scaling_repeats": 1, "fixed_samples": 10**4}  # fmt: skip
    for k, v in (smoke if args.smoke else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.repeats < 1 or args.scaling_repeats < 1:
        ap.error("repeats must be >= 1")
    if not 0 < args.fixed_samples < args.scaling_samples:
        ap.error("--fixed-samples must be between 1 and --scaling-samples - 1")
    return args


def main() -> int:
    args = parse()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import ray

    meminfo = Path("/proc/meminfo").read_text().split()
    header = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_model": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": int(meminfo[1]) / 2**20,
        "zcore_fast": zcore_fast.__version__,
        "isa": zcore_fast._native.isa_level(),
        "ray": ray.__version__,
        "numpy": np.__version__,
        "commit": git_commit(),
        "load_average_start": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    print(f"$ {header['command']}")
    print(
        f"zcore_fast {header['zcore_fast']} (commit {header['commit']}, {header['isa']} kernels), "
        f"Ray {header['ray']}, numpy {header['numpy']}; CPU: {header['cpu_model']}, "
        f"{header['cores']} cores, {header['ram_gib']:.1f} GiB RAM; load average "
        + " / ".join(f"{v:.2f}" for v in header["load_average_start"])
        + f" (1/5/15 min); {header['started']}"
    )
    figures: dict[str, Any] = {"header": header}
    failed = False
    for name, run in (("overhead", run_overhead), ("scaling", run_scaling)):
        if not getattr(args, name):
            continue
        try:
            figures[name] = run(args)
        except (RuntimeError, OSError) as e:
            print(f"\n{name}: FAILED: {e}")
            failed = True
        sys.stdout.flush()
    figures["header"]["load_average_end"] = list(os.getloadavg())
    print(
        "\nload average at the end: "
        + " / ".join(f"{v:.2f}" for v in figures["header"]["load_average_end"])
    )
    summary = []
    if "overhead" in figures:
        o = figures["overhead"]
        summary.append(
            f"overhead: ray {o['ray_median_seconds']:.2f} s / cpu {o['cpu_median_seconds']:.2f} s "
            f"= {o['ratio']:.3f} at N={o['n']} D={o['d']} {sci(o['samples'])} samples"
        )
    if "scaling" in figures:
        f = figures["scaling"]
        summary.append(
            f"scaling: t1 {f['t1_median_seconds']:.1f} s, t2 {f['t2_median_seconds']:.1f} s, "
            f"efficiency {f['efficiency']:.3f} at N={f['n']} D={f['d']} {sci(f['samples'])} samples"
        )
    for line in summary:
        print(line)
    if args.json:
        tmp = args.json.with_name(args.json.name + ".partial")
        tmp.write_text(json.dumps(figures, indent=1, default=str))
        os.replace(tmp, args.json)
    bad = [
        k
        for k in ("overhead", "scaling")
        if k in figures
        and (
            figures[k]["processes_left"]
            or not figures[k].get("identical_scores", figures[k].get("ray_runs_identical"))
            or (figures[k].get("cpu_check", {}).get("identical") is False)
        )
    ]
    if bad:
        print(f"FAILED checks: {', '.join(bad)} (scores differ or processes left running)")
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
