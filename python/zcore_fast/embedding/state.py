"""The run's records: the progress record of an unfinished run
(`emb.npy.progress.json`) and the manifest beside each finished file
(`emb.manifest.json`). Both carry the run's `config`, which a resumed run must
match exactly."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zcore_fast.io import atomic_write

#: Version tag of both records.
FORMAT = "zcore-fast-embeddings/1"


def progress_path(output: Path) -> Path:
    """The progress record of a run writing `output` (the -o path)."""
    return output.with_name(output.name + ".progress.json")


def manifest_path(final: Path) -> Path:
    """The manifest beside a finished .npy: emb.npy -> emb.manifest.json."""
    return final.with_name(final.stem + ".manifest.json")


@dataclass
class Progress:
    """How far a run got: images `done` (a whole number of batches), rows
    written (`done` less the skipped images), the skipped images, and the
    seconds spent so far. Only claims rows that were flushed before it was saved."""

    config: dict[str, Any]
    total: int
    done: int = 0
    rows: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def save(self, path: Path) -> None:
        """Writes the record atomically (temp file + rename)."""
        write_json(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: Path) -> Progress:
        """Reads a record; ValueError when it is not one."""
        data = read_json(path)
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a zcore-fast progress record ({FORMAT})")
        data.pop("format")
        try:
            return cls(**data)
        except TypeError:
            raise ValueError(f"{path} is damaged; delete it and the .partial files") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes JSON atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object; ValueError naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it to start over") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; delete it to start over")
    return data


def config_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between a recorded run's config and this one, in words;
    None when they match."""
    if old == new:
        return None
    src_old, src_new = old.get("source", {}), new.get("source", {})
    if src_old.get("sha256") != src_new.get("sha256"):
        n_old, n_new = src_old.get("count"), src_new.get("count")
        what = f"{n_old} images then, {n_new} now" if n_old != n_new else "same count, other paths"
        return f"the image list changed ({what})"
    models_old, models_new = old.get("models", []), new.get("models", [])
    names_old = [m.get("model") for m in models_old]
    names_new = [m.get("model") for m in models_new]
    if names_old != names_new:
        return f"the models differ (then {', '.join(names_old)}; now {', '.join(names_new)})"
    for i, (a, b) in enumerate(zip(models_old, models_new)):
        for key, what in (
            ("state_sha256", "weights"),
            ("preprocessing", "preprocessing"),
            ("dim", "output size"),
        ):
            if a.get(key) != b.get(key):
                return f"the {what} of model {i + 1} ({a.get('model')}) differ"
    for key in ("dtype", "precision", "device", "batch_size", "separate", "outputs"):
        if old.get(key) != new.get(key):
            return f"{key} was {old.get(key)!r}, now {new.get(key)!r}"
    return "the recorded settings differ"


def remove_quietly(path: Path) -> None:
    """Deletes a file if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
