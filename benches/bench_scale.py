"""Scale on one machine: ImageNet size, larger than RAM, and a scaling table.

Each figure, exactly as measured (run from the repository root; generated
pools and the engine's cache go to --workdir, default /tmp/zcore-bench, and
pools are reused by later runs):

    python benches/bench_scale.py --imagenet     # N = 1,281,167, D = 1,280, float16, 10^6 samples
    python benches/bench_scale.py --huge         # N = 10^8, D = 64, float16 (12.8 GB), 10^5 samples
    python benches/bench_scale.py --scaling      # N = 10^4 ... 10^7, D = 64: us/sample, exponent
    python benches/bench_scale.py --imagenet --huge --scaling --json scale.json   # all of them

Disk: --imagenet needs 3.3 GB for the pool, --huge 12.8 GB, --scaling 1.4 GB, plus
the engine's cache beside them (its size is printed). Smoke test at toy size:

    python benches/bench_scale.py --imagenet --huge --scaling --imagenet-rows 20000 --dims 64 \\
        --samples 2000 --huge-rows 200000 --huge-samples 2000 --scaling-rows 1e3,1e4,3e4

The pools are synthetic but shaped like embeddings: a Gaussian mixture of
--clusters (1,000) random centres with imbalanced weights, per-cluster spreads,
per-dimension scales and a Student-t factor per row (heavy-ish tails),
deterministic from --seed and written chunk by chunk into a float16 .npy
memmap (never whole in RAM; temp name, renamed when complete). Generation
runs at about 0.1-0.2 GB/s on 2 busy cores (1-2 minutes for the 12.8 GB
pool), once: later runs reuse the file.

Scoring goes through the public API, zcore_fast.score_report(path, ...,
backend="cpu", cache="always"), in a child process whose RssAnon the parent
samples every 20 ms: the peak of private/anonymous memory is printed against
the bound 36 bytes x N + 1 GiB (accumulators 16, the band index 8 and a pair
index 12 bytes per row; VmHWM is printed too; it includes the pages of
the memory-mapped files). The first call builds the engine's cache (the
cache directory is emptied first unless --keep-cache) and its build time is
reported apart; the next --repeats calls reuse it, and their median wall
time is the figure. --scaling builds the cache with a first call of at most
1,000 samples and times min(10^6, max(10^4, 10^11 / N)) samples per N.
--huge draws --huge-samples (10^5) and projects the time of the 10^7 that
n_sample="auto" would draw.

The reference is the plain NumPy ZCore of tests/reference.py (one core,
its own draws), timed per sample on a few samples of the same file in the
same run; the ratio is reference time per sample over engine time per
sample. At --huge size it is skipped unless --huge-ref-samples is given
(the output says why). The machine is shared: load averages are printed
with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_PYTHON = Path(__file__).resolve().parent.parent / "python"
# The in-place build (an extension module beside the sources, not the .pyi stub), not a
# stale install.
if any(p.suffix in (".so", ".pyd") for p in (_PYTHON / "zcore_fast").glob("_native*")):
    sys.path.insert(0, str(_PYTHON))
import zcore_fast  # noqa: E402
from _scale_data import (  # noqa: E402
    Progress,
    count,
    default_reference_samples,
    dir_bytes,
    ensure_mixture,
    gib,
    log,
    proc_status,
    reference_seconds_per_sample,
    sci,
    size,
)

GIB = 1 << 30
IMAGENET_ROWS = 1_281_167
IMAGENET_TARGET_S = 180.0


# --- the child: the scoring calls and nothing else in its memory -----------------------------


def score_call(spec: dict, n_sample: int, label: str, extra: dict) -> object:
    """One score_report call; drops keywords this build does not know yet
    (cache, cache_dir, cache_progress) from `extra` and retries."""
    progress, cache_progress = Progress(label), Progress(f"{label}: cache build")
    while True:
        kwargs = {k: v for k, v in extra.items() if k != "cache_progress"}
        if "cache_progress" in extra:
            kwargs["cache_progress"] = cache_progress
        try:
            return zcore_fast.score_report(
                spec["path"],
                n_sample=n_sample,
                threads=spec["threads"],
                backend="cpu",
                seed=0,
                progress=progress,
                **kwargs,
            )
        except TypeError as e:
            unknown = [k for k in extra if f"'{k}'" in str(e)]
            if not unknown:
                raise
            for k in ("cache", "cache_dir", "cache_progress") if "cache" in unknown else unknown:
                extra.pop(k, None)
        finally:
            progress.close()
            cache_progress.close()


def child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result: dict = {"after_import": proc_status("self"), "calls": []}
    extra = {"cache": "always", "cache_dir": spec["cache_dir"], "cache_progress": None}
    for i, n_sample in enumerate(spec["calls"]):
        start, t0 = time.time(), time.perf_counter()
        report = score_call(spec, n_sample, f"{spec['label']} call {i + 1}", extra)
        wall, end = time.perf_counter() - t0, time.time()
        cache_seconds = getattr(report, "cache_seconds", None)
        cache_path = getattr(report, "cache_path", None)
        scores = np.ascontiguousarray(report.scores)  # type: ignore[attr-defined]
        result["calls"].append(
            {
                "samples": report.n_sample,  # type: ignore[attr-defined]
                "wall_seconds": wall,
                "engine_seconds": report.seconds,  # type: ignore[attr-defined]
                "cache_seconds": None if cache_seconds is None else float(cache_seconds),
                "cache_path": None if cache_path is None else str(cache_path),
                "convergence": report.convergence,  # type: ignore[attr-defined]
                "threads": report.parameters.get("threads"),  # type: ignore[attr-defined]
                "sha256": hashlib.sha256(memoryview(scores)).hexdigest(),
                "start": start,
                "end": end,
            }
        )
        del report, scores
    result["cache_supported"] = "cache" in extra
    result["at_exit"] = proc_status("self")
    Path(spec["result"]).write_text(json.dumps(result))


# --- the parent: generation, measurement, reference, output ---------------------------------


def run_measured(spec: dict[str, object], workdir: Path) -> dict:
    """Run the scoring calls of `spec` in a child process, sampling its
    RssAnon every 20 ms; the child's result plus the peaks."""
    tag = f"{spec['label']}-{os.getpid()}"
    spec_file, result_file = workdir / f".spec-{tag}.json", workdir / f".result-{tag}.json"
    spec = {**spec, "result": str(result_file)}
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_file)]
    samples: list[tuple[float, int]] = []
    hwm = 0
    proc = subprocess.Popen(cmd)
    try:
        while proc.poll() is None:
            st = proc_status(proc.pid)
            if "RssAnon" in st:
                samples.append((time.time(), st["RssAnon"]))
                hwm = max(hwm, st.get("VmHWM", 0))
            time.sleep(0.02)
    except KeyboardInterrupt:
        proc.wait()
        raise
    finally:
        spec_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        rc = proc.returncode
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with {rc}"
        peak = gib(max((r for _, r in samples), default=None))
        raise RuntimeError(f"{spec['label']}: scoring process {how} (peak RssAnon {peak} GiB)")
    res = json.loads(result_file.read_text())
    result_file.unlink()
    hwm = max(hwm, res["at_exit"].get("VmHWM", 0))
    res["peak_anon"] = max((r for _, r in samples), default=None)
    res["vm_hwm"] = hwm or None
    res["memory_samples"] = len(samples)
    for call in res["calls"]:
        # The cache is built first in a call: split the call's samples there.
        split = call["start"] + (call["cache_seconds"] or 0.0)
        build = [r for t, r in samples if call["start"] <= t <= split]
        scoring = [r for t, r in samples if split < t <= call["end"]]
        call["peak_anon_cache_build"] = max(build, default=None) if call["cache_seconds"] else None
        call["peak_anon_scoring"] = max(scoring, default=None)
        call["peak_anon"] = max(build + scoring, default=None)
    return res


def measure(
    args: argparse.Namespace, label: str, n: int, d: int, calls: list[int], ref_samples: int
) -> dict:
    """Generate (or reuse) the pool, score it in a measured child, time the
    reference; every figure of one configuration."""
    load_before = os.getloadavg()[0]
    path, gen_seconds = ensure_mixture(
        args.workdir,
        n,
        d,
        seed=args.seed,
        clusters=args.clusters,
        threads=args.threads or len(os.sched_getaffinity(0)),
        log=log,
    )
    if gen_seconds is not None:
        log(f"{label}: generated {path.name} in {gen_seconds:.1f} s")
    cache_dir = args.workdir / "cache" / path.stem
    if not args.keep_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"{label}: scoring N={n:,} D={d} with {', '.join(f'{c:,}' for c in calls)} samples")
    res = run_measured(
        {
            "label": label,
            "path": str(path),
            "calls": calls,
            "threads": args.threads,
            "cache_dir": str(cache_dir),
        },
        args.workdir,
    )
    first, cached = res["calls"][0], res["calls"][1:]
    if cached:
        seconds = statistics.median(c["wall_seconds"] for c in cached)
        samples = cached[0]["samples"]
    else:
        seconds = first["wall_seconds"] - (first["cache_seconds"] or 0.0)
        samples = first["samples"]
    ref = None
    if ref_samples > 0:
        log(f"{label}: reference, {ref_samples} samples (+1 warm-up)")
        ref = reference_seconds_per_sample(path, ref_samples)
    per = seconds / samples
    bound = 36 * n + GIB
    return {
        "label": label,
        "n": n,
        "d": d,
        "dtype": "float16",
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "generated_seconds": gen_seconds,
        "threads": first["threads"],
        "cache_supported": res["cache_supported"],
        "cache_seconds": first["cache_seconds"],
        "cache_bytes": dir_bytes(cache_dir),
        "cache_path": first["cache_path"],
        "calls": res["calls"],
        "samples": samples,
        "seconds": seconds,
        "seconds_per_sample": per,
        "identical_scores": len({c["sha256"] for c in res["calls"] if c["samples"] == samples})
        == 1,
        "reference": ref,
        "ratio": None if ref is None else ref["seconds_per_sample"] / per,
        "peak_anon": res["peak_anon"],
        "vm_hwm": res["vm_hwm"],
        "anon_after_import": res["after_import"].get("RssAnon"),
        "bound": bound,
        "bound_holds": None if res["peak_anon"] is None else res["peak_anon"] <= bound,
        "memory_samples": res["memory_samples"],
        "load_average": [load_before, os.getloadavg()[0]],
    }


def print_calls(fig: dict) -> None:
    print(
        f"\n## {fig['label']}: N = {fig['n']:,}, D = {fig['d']:,}, float16 .npy "
        f"({size(fig['file_bytes'])}), threads {fig['threads']}"
    )
    gen = fig["generated_seconds"]
    print(
        f"pool: {'reused' if gen is None else f'generated in {gen:.1f} s'}, {fig['path']}; "
        f"load average {fig['load_average'][0]:.1f} before, {fig['load_average'][1]:.1f} after\n"
    )
    print(
        "| call | samples | wall (s) | cache build (s) | scoring (s) | engine (s) | us/sample "
        "| rho halves | peak anon: cache build / scoring (GiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i, c in enumerate(fig["calls"]):
        cs = c["cache_seconds"]
        what = "first" if cs is None else "builds the cache" if cs > 0 else "cache reused"
        scoring = c["wall_seconds"] - (cs or 0.0)
        cells = [
            f"{i + 1}: {what}",
            f"{c['samples']:,}",
            f"{c['wall_seconds']:.1f}",
            "n/a" if cs is None else f"{cs:.1f}",
            f"{scoring:.1f}",
            f"{c['engine_seconds']:.1f}",
            f"{scoring / c['samples'] * 1e6:.1f}",
            f"{c['convergence']:.3f}",
            f"{gib(c['peak_anon_cache_build'])} / {gib(c['peak_anon_scoring'])}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nscoring = wall - cache build: the engine, plus opening the cache and the "
        "split-half convergence; engine = ScoreReport.seconds."
    )
    if not fig["cache_supported"]:
        print(
            "\nnote: this build's score_report has no cache/cache_dir parameters: every call "
            "prepares the layout itself, and no cache build time can be separated."
        )
    print(f"cache: {size(fig['cache_bytes'])} on disk ({fig['cache_path']})")
    ref = fig["reference"]
    if ref is not None:
        print(
            f"reference (tests/reference.py, 1 core, {ref['samples']} samples on the same "
            f"memory-mapped file): {ref['seconds_per_sample'] * 1e3:.1f} ms/sample "
            f"(column stats {ref['stats_seconds']:.1f} s, not timed)"
        )
    print(
        f"memory: peak RssAnon {gib(fig['peak_anon'])} GiB ({fig['memory_samples']} samples "
        f"20 ms apart; {gib(fig['anon_after_import'])} GiB after import), VmHWM "
        f"{gib(fig['vm_hwm'])} GiB (includes mapped file pages), bound 36 x N + 1 GiB = "
        f"{gib(fig['bound'])} GiB: {holds(fig)}"
    )
    print(
        f"scores of the calls with {fig['samples']:,} samples bit-identical: "
        f"{'yes' if fig['identical_scores'] else 'NO'}"
    )


def holds(fig: dict) -> str:
    return {None: "not measured", True: "holds", False: "EXCEEDED"}[fig["bound_holds"]]


def summary(fig: dict) -> str:
    cs = fig["cache_seconds"]
    text = (
        f"{fig['label']}: N={fig['n']} D={fig['d']} f16, {sci(fig['samples'])} samples: "
        f"{fig['seconds']:.1f} s ({fig['seconds_per_sample'] * 1e6:.1f} us/sample)"
    )
    if (fig["n"], fig["d"], fig["samples"]) == (IMAGENET_ROWS, 1280, 10**6):
        met = "met" if fig["seconds"] <= IMAGENET_TARGET_S else "NOT met"
        text += f" [target <= {IMAGENET_TARGET_S:.0f} s: {met}]"
    text += f", cache build {'n/a' if cs is None else f'{cs:.1f} s'}"
    if fig.get("projection"):
        p = fig["projection"]
        text += f", projected {p['seconds']:.0f} s at auto n_sample {sci(p['samples'])}"
    if fig["reference"] is None:
        text += ", reference skipped"
    else:
        text += (
            f", reference {fig['reference']['seconds_per_sample'] * 1e3:.0f} ms/sample -> "
            f"ratio {fig['ratio']:.0f}x"
        )
    return text + (
        f", peak anon {gib(fig['peak_anon'])} GiB (bound {gib(fig['bound'])} GiB: {holds(fig)})"
    )


def run_imagenet(args: argparse.Namespace) -> dict:
    n, d = args.imagenet_rows, args.dims or 1280
    s = args.samples or 10**6
    fig = measure(
        args,
        "imagenet",
        n,
        d,
        [s] * (1 + args.repeats),
        args.ref_samples if args.ref_samples is not None else default_reference_samples(n),
    )
    print_calls(fig)
    print("\n" + summary(fig))
    return fig


def run_huge(args: argparse.Namespace) -> dict:
    n, d, s = args.huge_rows, args.dims or 64, args.huge_samples
    need, free = n * d * 2, shutil.disk_usage(args.workdir).free
    log(f"huge: pool {size(need)}; {size(free)} free in {args.workdir}")
    fig = measure(args, "huge", n, d, [s] * (1 + args.repeats), args.huge_ref_samples)
    auto = zcore_fast.auto_n_sample(n)
    fig["projection"] = {"samples": auto, "seconds": fig["seconds_per_sample"] * auto}
    print_calls(fig)
    print(
        f"note: --huge-samples {s:,}; n_sample='auto' would draw {auto:,} at this N, so the "
        f"projected scoring time is {fig['seconds_per_sample'] * 1e6:.1f} us/sample x {auto:,} "
        f"= {fig['projection']['seconds']:.0f} s ({fig['projection']['seconds'] / 3600:.1f} h)"
    )
    if fig["reference"] is None:
        print(
            f"reference: skipped (--huge-ref-samples 0). Per sample the reference gathers two "
            f"columns of the row-major {size(need)} file (every 4 KiB page holds only "
            f"{4096 // (2 * d)} rows, so the whole file is read), then allocates and argsorts "
            f"{n:,} distances (about {size(36 * n)} of temporaries): seconds to minutes per sample "
            "depending on the page cache. Pass --huge-ref-samples 3 to measure it anyway; "
            "--scaling gives the ratio's trend up to 10^7."
        )
    print("\n" + summary(fig))
    return fig


def run_scaling(args: argparse.Namespace) -> dict:
    d, rows = args.dims or 64, sorted(set(args.scaling_rows))
    figs = []
    for n in rows:
        s = args.samples or min(10**6, max(10**4, 10**11 // n))
        ref = args.ref_samples if args.ref_samples is not None else default_reference_samples(n)
        figs.append(
            measure(args, f"scaling-{n}", n, d, [min(s, 1000)] + [s] * max(1, args.repeats), ref)
        )
    print(
        f"\n## scaling: D = {d}, float16 .npy, threads {figs[0]['threads']}; first call "
        "(<= 1,000 samples) builds the cache and is not in the table's time\n"
    )
    print(
        "| N | samples | cache build (s) | seconds | us/sample | reference ms/sample (samples) "
        "| ratio vs reference | peak anon (MiB) | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for f in figs:
        ref, cs, peak = f["reference"], f["cache_seconds"], f["peak_anon"]
        cells = [
            f"{f['n']:,}",
            f"{f['samples']:,}",
            "n/a" if cs is None else f"{cs:.1f}",
            f"{f['seconds']:.2f}" if f["seconds"] < 10 else f"{f['seconds']:.1f}",
            f"{f['seconds_per_sample'] * 1e6:.1f}",
            "-" if ref is None else f"{ref['seconds_per_sample'] * 1e3:.2f} ({ref['samples']})",
            "-" if f["ratio"] is None else f"{f['ratio']:.0f}x",
            "n/a" if peak is None else f"{peak / 2**20:.0f}",
            f"{f['load_average'][1]:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    out: dict[str, object] = {"d": d, "rows": figs, "exponent": None, "reference_exponent": None}
    if len(figs) >= 2:
        ns = np.log([f["n"] for f in figs])
        out["exponent"] = float(
            np.polyfit(ns, np.log([f["seconds_per_sample"] for f in figs]), 1)[0]
        )
        refs = [f["reference"] for f in figs]
        if all(refs):
            out["reference_exponent"] = float(
                np.polyfit(ns, np.log([r["seconds_per_sample"] for r in refs]), 1)[0]
            )
        extra = (
            ""
            if out["reference_exponent"] is None
            else f"; reference ~ N^{out['reference_exponent']:.2f}"
        )
        print(
            f"\nfitted exponent: {out['exponent']:.2f} (time per sample ~ "
            f"N^{out['exponent']:.2f}, log-log least squares over N = "
            f"{', '.join(sci(f['n']) for f in figs)}{extra})"
        )
    else:
        print("\nfitted exponent: needs at least two sizes in --scaling-rows")
    return out


def counts(text: str) -> list[int]:
    """Comma-separated counts: 1e4,1e5,1e6."""
    return [count(v) for v in text.split(",")]


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--imagenet", action="store_true", help="N = 1,281,167, D = 1,280, 10^6 samples"
    )
    ap.add_argument("--huge", action="store_true", help="N = 10^8, D = 64 (larger than RAM)")
    ap.add_argument("--scaling", action="store_true", help="us/sample for N = 10^4 ... 10^7")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/zcore-bench"),
        help="generated pools (reused) and the engine's cache",
    )
    ap.add_argument(
        "--samples",
        type=count,
        help="samples per call: --imagenet (default 10^6) "
        "and --scaling (default min(10^6, max(10^4, 10^11 / N)))",
    )
    ap.add_argument(
        "--threads", type=int, help="scoring and generation threads (default: all cores)"
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="calls after the first, cache reused (median reported; default 1)",
    )
    ap.add_argument(
        "--ref-samples",
        type=count,
        help="reference samples per N (default: a few seconds' worth, at least 3)",
    )
    ap.add_argument("--huge-rows", type=count, default=10**8)
    ap.add_argument("--huge-samples", type=count, default=10**5)
    ap.add_argument(
        "--huge-ref-samples",
        type=count,
        default=0,
        help="reference samples at --huge size (default 0: skipped, see output)",
    )
    ap.add_argument(
        "--keep-cache",
        action="store_true",
        help="keep an existing engine cache (the first call then builds nothing)",
    )
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--clusters", type=int, default=1000, help="mixture components")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated pools")
    small = ap.add_argument_group("sizes (for smoke tests)")
    small.add_argument("--imagenet-rows", type=count, default=IMAGENET_ROWS)
    small.add_argument(
        "--dims", type=int, help="D of every mode (default 1280 imagenet, 64 others)"
    )
    small.add_argument(
        "--scaling-rows",
        type=counts,
        default=[10**4, 10**5, 10**6, 10**7],
        help="comma-separated, e.g. 1e4,1e5",
    )
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args._child and not (args.imagenet or args.huge or args.scaling):
        ap.error("choose at least one of --imagenet, --huge, --scaling")
    if args.repeats < 0:
        ap.error("--repeats must be >= 0")
    return args


def main() -> int:
    args = parse()
    if args._child:
        child_main(args._child)
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    meminfo = Path("/proc/meminfo").read_text().split()
    print(
        f"zcore_fast {zcore_fast.__version__} ({Path(zcore_fast.__file__).parent}), "
        f"numpy {np.__version__}, "
        f"{len(os.sched_getaffinity(0))} cores, {int(meminfo[1]) / 2**20:.1f} GiB RAM, "
        f"load average {os.getloadavg()[0]:.1f}, workdir {args.workdir}"
    )
    figures: dict[str, object] = {}
    failed = False
    for name, run in (("imagenet", run_imagenet), ("huge", run_huge), ("scaling", run_scaling)):
        if not getattr(args, name):
            continue
        try:
            figures[name] = run(args)
        except (RuntimeError, OSError) as e:
            print(f"\n{name}: FAILED: {e}")
            failed = True
        sys.stdout.flush()
    if args.json:
        tmp = args.json.with_name(args.json.name + ".partial")
        tmp.write_text(json.dumps(figures, indent=1, default=str))
        os.replace(tmp, args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
