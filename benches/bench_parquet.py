"""Parquet into the column cache: time against the .npy path, and memory.

    python benches/bench_parquet.py          # N = 10^6, D = 1,280, float16, 10 row groups
    python benches/bench_parquet.py --rows 20000 --dims 64 --repeats 1   # smoke test

The pool is the synthetic float16 mixture of benches/_scale_data.py (reused
from --workdir, default /tmp/zcore-bench). It is written to Parquet once per
encoding, row group by row group (never whole in RAM), as a list<halffloat>
column "embedding" beside an int64 "id":

- "default": pyarrow's defaults (dictionary encoding tried first, snappy),
  what a user's `pq.write_table` gives;
- "plain": use_dictionary=False (snappy), what embedding writers that know
  their data is incompressible choose.

Each file is read twice: "pages", the default path, where the engine
decodes the pages (integrations/parquet_pages.py), and "pyarrow", pyarrow's
own column reader (`parquet.PAGE_DECODER = False`), for comparison.

Each build runs in a child process whose RssAnon the parent samples every
20 ms (pwrite, not a memory map, writes the copy, so the page cache does
not count against the process). The reference, in the same run, is the
.npy path's cache build (`zcore_fast.cache.prepare(path, cache="always")`,
the Rust engine) of the same pool. Each figure is the median of --repeats
builds into an emptied cache directory. Targets (issue 17): parquet/npy
<= 1.5 and peak RssAnon <= 1 GiB.
"""

from __future__ import annotations

import argparse
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
if any(p.suffix in (".so", ".pyd") for p in (_PYTHON / "zcore_fast").glob("_native*")):
    sys.path.insert(0, str(_PYTHON))
from _scale_data import count, ensure_mixture, gib, proc_status  # noqa: E402

GIB = 1 << 30


def ensure_parquet(npy: Path, encoding: str, row_groups: int) -> Path:
    """The pool at `npy` as Parquet with `row_groups` row groups, written
    once (temp name, renamed when complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = npy.with_name(f"{npy.stem}_rg{row_groups}_{encoding}.parquet")
    if out.exists():
        return out
    x = np.load(npy, mmap_mode="r")
    n, d = x.shape
    step = -(-n // row_groups)
    tmp = out.with_suffix(".parquet.tmp")
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float16()))])
    start = time.perf_counter()
    with pq.ParquetWriter(tmp, schema, use_dictionary=encoding == "default") as writer:
        for lo in range(0, n, step):
            block = np.ascontiguousarray(x[lo : lo + step])
            offsets = pa.array(np.arange(0, len(block) * d + 1, d, dtype=np.int32))
            column = pa.ListArray.from_arrays(offsets, pa.array(block.reshape(-1)))
            ids = pa.array(np.arange(lo, lo + len(block), dtype=np.int64))
            writer.write_table(pa.table({"id": ids, "embedding": column}, schema=schema))
    os.replace(tmp, out)
    print(
        f"wrote {out} ({out.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - start:.0f} s"
    )
    return out


def child(spec: dict) -> None:
    """One cache build, timed; writes {"seconds": ...} to spec["result"]."""
    import zcore_fast
    from zcore_fast.integrations import parquet
    from zcore_fast.integrations.tables import resolve

    parquet.PAGE_DECODER = spec["pages"]

    cache_dir = Path(spec["cache_dir"])
    start = time.perf_counter()
    if spec["kind"] == "npy":
        zcore_fast.cache.prepare(spec["path"], cache="always", cache_dir=cache_dir)
    else:
        with resolve(spec["path"], cache="always", cache_dir=cache_dir) as table:
            assert table.cache_path is not None
    seconds = time.perf_counter() - start
    Path(spec["result"]).write_text(json.dumps({"seconds": seconds}))


def measured(kind: str, path: Path, workdir: Path, pages: bool = True) -> dict[str, float]:
    """A build in a child process: its seconds and peak RssAnon. `pages`:
    Parquet through the engine's page decoder where it takes the file
    (False: pyarrow's reader)."""
    cache_dir = workdir / f"cache-parquet-bench-{os.getpid()}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    result = workdir / f".result-parquet-{os.getpid()}.json"
    spec = {
        "kind": kind,
        "path": str(path),
        "cache_dir": str(cache_dir),
        "result": str(result),
        "pages": pages,
    }
    proc = subprocess.Popen([sys.executable, __file__, "--_child", json.dumps(spec)])
    peak = 0
    try:
        while proc.poll() is None:
            peak = max(peak, proc_status(proc.pid).get("RssAnon", 0))
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(cache_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} build failed with exit status {proc.returncode}")
    seconds = json.loads(result.read_text())["seconds"]
    result.unlink()
    return {"seconds": seconds, "peak_anon": peak}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--_child":
        child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=count, default=1_000_000)
    ap.add_argument("--dims", type=int, default=1280)
    ap.add_argument("--row-groups", type=int, default=10)
    ap.add_argument("--encodings", default="default,plain")
    ap.add_argument(
        "--decoders",
        default="pages,pyarrow",
        help="pages: the engine's page decoder (the default path); pyarrow: its reader",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/zcore-bench"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    npy, _ = ensure_mixture(args.workdir, args.rows, args.dims, log=print)
    models = [ln for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
    cpu = models[0].split(":", 1)[1].strip() if models else "?"
    print(f"CPU {cpu}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(f"pool: N = {args.rows:,}, D = {args.dims}, float16, {args.row_groups} row groups")
    figures: dict[str, dict] = {}
    paths = {"npy": (npy, True)}
    for encoding in args.encodings.split(","):
        file = ensure_parquet(npy, encoding, args.row_groups)
        for decoder in args.decoders.split(","):
            paths[f"{encoding}/{decoder}"] = (file, decoder == "pages")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
    for _ in range(args.repeats):  # interleaved, so load changes hit every kind alike
        for kind, (path, pages) in paths.items():
            runs[kind].append(
                measured("npy" if kind == "npy" else "parquet", path, args.workdir, pages)
            )
    ref = statistics.median(r["seconds"] for r in runs["npy"])
    for kind, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        peak = max(r["peak_anon"] for r in rs)
        figures[kind] = {"seconds": secs, "ratio_to_npy": secs / ref, "peak_anon": peak}
        verdict = "met" if secs / ref <= 1.5 else "MISSED"
        target = "" if kind == "npy" else f" (target <= 1.5: {verdict})"
        print(
            f"{kind:>16}: {secs:7.2f} s median of {len(rs)} = {secs / ref:.2f}x the .npy build"
            f"{target}; "
            f"peak RssAnon {gib(peak)} GiB ({'within' if peak <= GIB else 'OVER'} 1 GiB); "
            f"load {os.getloadavg()[0]:.1f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"cpu": cpu, "rows": args.rows, "dims": args.dims, **figures}, indent=1)
        )


if __name__ == "__main__":
    main()
