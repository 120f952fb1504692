"""The output files of a run: their names, their columns, their manifests."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zcore_fast.embedding.sources import ImageList
from zcore_fast.embedding.specs import slug
from zcore_fast.embedding.state import FORMAT, Progress, config_mismatch, manifest_path, read_json


@dataclass(frozen=True)
class Output:
    """One .npy file of a run and the models whose features are its columns
    (`models` are indices into the run's model list, in column order)."""

    path: Path
    models: tuple[int, ...]


def output_path(output: Any) -> Path:
    """Checks the -o path: a .npy file name in an existing folder."""
    out = Path(os.fspath(output))
    if out.suffix.lower() != ".npy":
        raise ValueError(f"{out}: embeddings are written as .npy; give a path ending in .npy")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{out}: folder {parent} does not exist; create it first")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file name ending in .npy")
    return out


def plan_outputs(out: Path, specs: list[str], separate: bool) -> list[Output]:
    """One file with every model's columns side by side, or with `separate`
    one file per model: emb.npy -> emb.<model>.npy (numbered when two models
    would share a name)."""
    if not separate or len(specs) == 1:
        return [Output(out, tuple(range(len(specs))))]
    names = [slug(s) for s in specs]
    outputs = []
    for k, name in enumerate(names):
        if names.count(name) > 1:
            name = f"{name}-{names[:k].count(name) + 1}"
        outputs.append(Output(out.with_name(f"{out.stem}.{name}.npy"), (k,)))
    return outputs


def columns(output: Output, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's column ranges: which model wrote which columns."""
    cols, start = [], 0
    for k in output.models:
        model = config["models"][k]
        cols.append({"model": model["model"], "start": start, "stop": start + model["dim"]})
        start += model["dim"]
    return cols


def manifest(
    output: Output, images: ImageList, progress: Progress, device_name: str
) -> dict[str, Any]:
    """The JSON written beside a finished .npy: row -> image, columns -> model,
    how each model was loaded and fed, what was skipped and why."""
    import numpy as np

    cols = columns(output, progress.config)
    skipped_at = {s["index"] for s in progress.skipped}
    names = images.names
    return {
        "format": FORMAT,
        "file": output.path.name,
        "rows": progress.rows,
        "dim": cols[-1]["stop"],
        "dtype": progress.config["dtype"],
        "columns": cols,
        "images": [n for i, n in enumerate(names) if i not in skipped_at],
        "skipped": progress.skipped,
        "config": progress.config,
        "device_name": device_name,
        "seconds": progress.seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(np.__version__),
    }


def completed(outputs: list[Output], config: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a finished run with this config, when every output
    exists; None when there is none. ValueError when the files exist but were
    made differently (so `--resume` never silently reuses them)."""
    found = []
    for output in outputs:
        mpath = manifest_path(output.path)
        if not (output.path.exists() and mpath.exists()):
            return None
        data = read_json(mpath)
        why = config_mismatch(data.get("config", {}), config)
        if why:
            raise ValueError(
                f"cannot resume: {output.path} is from another run ({why}); run without --resume "
                "to replace it"
            )
        found.append(data)
    return found[0]


def device_name(device: Any) -> str:
    """The GPU's name, or the CPU's."""
    if device.type == "cuda":
        import torch

        return str(torch.cuda.get_device_name(device))
    return platform.processor() or platform.machine() or "cpu"


def _versions(numpy_version: str) -> dict[str, str]:
    import torch

    from zcore_fast import __version__

    return {"zcore_fast": __version__, "torch": torch.__version__, "numpy": numpy_version}
