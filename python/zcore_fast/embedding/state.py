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
        return cls.parse(read_json(path), path)

    @classmethod
    def parse(cls, data: dict[str, Any], path: Path) -> Progress:
        """The record in `data` (a JSON object read from `path`); ValueError
        naming `path` unless every field has its type and the counts agree
        (0 <= rows <= done <= total): a resumed run trusts them to seek into
        its partial files."""
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a zcore-fast progress record ({FORMAT})")
        fields = {k: v for k, v in data.items() if k != "format"}
        counts = [fields.get(k) for k in ("total", "done", "rows")]
        ok = (
            fields.keys() == _PROGRESS_FIELDS
            and isinstance(fields["config"], dict)
            and all(type(c) is int for c in counts)  # type(): a bool is not a count
            and 0 <= fields["rows"] <= fields["done"] <= fields["total"]
            and isinstance(fields["skipped"], list)
            and all(isinstance(s, dict) for s in fields["skipped"])
            and type(fields["seconds"]) in (int, float)
        )
        if not ok:
            raise ValueError(f"{path} is damaged; delete it and the .partial files")
        return cls(**fields)


_PROGRESS_FIELDS = {"config", "total", "done", "rows", "skipped", "seconds"}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes JSON atomically; on a full disk the error names the bytes
    needed (a manifest lists every image: megabytes for a large pool)."""
    text = json.dumps(data, indent=1) + "\n"
    with atomic_write(path, "w", size=len(text.encode())) as handle:
        handle.write(text)


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object; ValueError naming the file when it is not one."""
    with open(path, "rb") as handle:
        return parse_json_object(handle.read(), path)


def parse_json_object(text: bytes, path: Path) -> dict[str, Any]:
    """The JSON object in `text` (read from `path`); ValueError naming the
    file for anything else. No other exception escapes (fuzzed: fuzz/python)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply; delete it to start over") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({e}); delete it to start over") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; delete it to start over")
    return data


def config_mismatch(old: Any, new: dict[str, Any]) -> str | None:
    """What differs between a recorded run's config (`old`, as read from a
    file, so any JSON value) and this one, in words; None when they match."""
    if old == new:
        return None
    if not isinstance(old, dict):
        return "the recorded settings are damaged"
    src_old, src_new = _get(old, "source"), _get(new, "source")
    if _get(src_old, "sha256") != _get(src_new, "sha256"):
        n_old, n_new = _get(src_old, "count"), _get(src_new, "count")
        what = f"{n_old} images then, {n_new} now" if n_old != n_new else "same count, other paths"
        return f"the image list changed ({what})"
    models_old, models_new = _get(old, "models"), _get(new, "models")
    models_old = models_old if isinstance(models_old, list) else []
    names_old = [str(_get(m, "model")) for m in models_old]
    names_new = [str(_get(m, "model")) for m in models_new]
    if names_old != names_new:
        return f"the models differ (then {', '.join(names_old)}; now {', '.join(names_new)})"
    for i, (a, b) in enumerate(zip(models_old, models_new)):
        for key, what in (
            ("state_sha256", "weights"),
            ("preprocessing", "preprocessing"),
            ("dim", "output size"),
        ):
            if _get(a, key) != _get(b, key):
                return f"the {what} of model {i + 1} ({_get(a, 'model')}) differ"
    for key in ("dtype", "precision", "device", "batch_size", "separate", "outputs"):
        if old.get(key) != new.get(key):
            return f"{key} was {old.get(key)!r}, now {new.get(key)!r}"
    return "the recorded settings differ"


def _get(record: Any, key: str) -> Any:
    """`record[key]` of a JSON object, None for a missing key or a record
    that is not an object."""
    return record.get(key) if isinstance(record, dict) else None


def remove_quietly(path: Path) -> None:
    """Deletes a file if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
