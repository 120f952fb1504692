"""Fuzz target: the embedding run's records, the progress file a resumed run
trusts (`Progress.parse`) and the manifest a finished run is recognised by
(`config_mismatch` against this run's config), over arbitrary bytes.

Run: python fuzz/python/embed_records.py fuzz/corpus/py_embed_records -runs=10000000
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris_or_replay

with atheris_or_replay.instrumented(__name__ == "__main__"):
    from zcore_fast.embedding.state import Progress, config_mismatch, parse_json_object

PATH = Path("fuzz.json")
#: A config as `embed` records it (two models, so per-model checks run).
CONFIG = {
    "source": {"sha256": "ab", "count": 3},
    "models": [
        {"model": "resnet18", "state_sha256": "cd", "preprocessing": {"size": 224}, "dim": 512},
        {"model": "vit_b_16", "state_sha256": "ef", "preprocessing": {"size": 224}, "dim": 768},
    ],
    "dtype": "float16",
    "precision": "fp32",
    "device": "cpu",
    "batch_size": 8,
    "separate": False,
    "outputs": ["emb.npy"],
}


def check(data: bytes) -> None:
    """ValueError naming the file, or a record a resumed run may trust; and
    a config comparison that always answers in words or None."""
    try:
        record = parse_json_object(data, PATH)
    except ValueError as e:
        assert str(e).startswith(f"{PATH} "), e
        return
    why = config_mismatch(record.get("config"), CONFIG)
    assert why is None or (isinstance(why, str) and why)
    try:
        progress = Progress.parse(record, PATH)
    except ValueError as e:
        assert str(e).startswith(f"{PATH} "), e
        return
    assert 0 <= progress.rows <= progress.done <= progress.total
    assert isinstance(progress.config, dict) and isinstance(progress.skipped, list)


if __name__ == "__main__":
    atheris_or_replay.main(check, sys.argv)
