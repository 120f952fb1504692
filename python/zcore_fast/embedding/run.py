"""`embed`: images -> N x D .npy (+ manifest), resumable. Orchestration only;
torch is imported when `embed` runs, never on `import zcore_fast`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zcore_fast.embedding.outputs import (
    Output,
    completed,
    device_name,
    manifest,
    output_path,
    plan_outputs,
)
from zcore_fast.embedding.sources import ImageList, PathLike, Source, find_images
from zcore_fast.embedding.state import (
    Progress,
    config_mismatch,
    manifest_path,
    progress_path,
    remove_quietly,
    write_json,
)

if TYPE_CHECKING:
    from zcore_fast.embedding.models import LoadedModel
    from zcore_fast.embedding.writer import PartialArray

#: A model: a spec string (see specs.ACCEPTED_FORMS) or a torch.nn.Module.
ModelArg = Any
ProgressFn = Callable[[int, int], None]
#: Output dtypes.
DTYPES = ("float16", "float32")


@dataclass
class EmbedResult:
    """What `embed` produced.

    `outputs` are the .npy files (one, or one per model with `separate`),
    `manifests` the JSON beside each; every file has `rows` rows (the readable
    images, in source order) and the columns of its models (`dims[k]` each).
    `skipped` holds (path, reason) of the images left out. `images_per_s`
    counts the images this call processed (0 when it found the run complete);
    `resumed_from` is how many images earlier runs had done.
    """

    outputs: list[Path]
    manifests: list[Path]
    rows: int
    dims: list[int]
    images: int
    skipped: list[tuple[str, str]]
    seconds: float
    images_per_s: float
    resumed_from: int
    device: str
    precision: str
    dtype: str
    batch_size: int
    workers: int


def embed(
    source: Source,
    output: PathLike,
    model: ModelArg | Sequence[ModelArg],
    *,
    weights: str | Sequence[str | None] | None = None,
    transform: Callable[[Any], Any] | Sequence[Callable[[Any], Any] | None] | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    dtype: str = "float16",
    separate: bool = False,
    resume: bool = False,
    strict: bool = False,
    progress: ProgressFn | None = None,
    checkpoint_every: float = 10.0,
) -> EmbedResult:
    """Embeds every image of `source` with one or more models into `output` (.npy).

    source: a folder (recursive), a text file listing image paths, or a
        sequence of paths (see `find_images`); rows follow that order.
    model: a spec string ("open_clip:ViT-L-14", "timm:resnet18",
        "torchvision:resnet18", "package.module:factory") or a torch module
        mapping (B, 3, H, W) to (B, D); or a list of them, whose features are
        concatenated along D (or, with `separate`, written one file each,
        `<output stem>.<model>.npy`).
    weights: per model, a local weights file, a tag whose file is already in
        the local cache, or "random" (seeded untrained weights). Nothing is
        ever downloaded.
    transform: per module given as `model`, PIL image -> (3, H, W) tensor
        (default: ImageNet resize 256, center crop 224, normalise). Such a
        module is put in eval mode and moved to the device.
    batch_size: images per forward pass (default 256 on a GPU, 64 on the CPU).
    workers: decoding processes (default: up to 16 on a GPU, a few on the CPU).
    device: "auto" (CUDA when visible), "cpu", "cuda" or "cuda:N".
    precision: "auto" (fp16 autocast on a GPU, fp32 on the CPU), "fp32",
        "fp16" or "bf16".
    dtype: of the output, "float16" (default) or "float32".
    resume: continue an interrupted run of the same output and settings; the
        result is byte-identical to an uninterrupted run. Starts afresh when
        there is nothing to resume; returns at once when the run is complete.
    strict: fail on the first unreadable image instead of skipping it.
    progress: called as progress(images_done, images_total) after each batch;
        raise from it to stop (the run can then be resumed).
    checkpoint_every: seconds between progress records (a kill -9 loses at
        most this much work; an exception or Ctrl-C loses none).

    Unreadable images get no row and are listed in the manifest with the
    reason. Raises FileNotFoundError, ValueError or TypeError for bad input,
    and FileExistsError when an interrupted run exists and `resume` is False.
    """
    began = time.perf_counter()
    out = output_path(output)
    _check_numbers(dtype, batch_size, workers, checkpoint_every)
    images = find_images(source)
    torch = _import_torch()
    from zcore_fast.embedding import device as devices

    dev = devices.resolve_device(device)
    prec = devices.resolve_precision(precision, dev)
    batch = batch_size or (256 if dev.type == "cuda" else 64)
    n_workers = devices.default_workers(dev) if workers is None else workers
    loaded = _load_models(model, weights, transform)
    fingerprints = [m.fingerprint() for m in loaded]  # hashed on the CPU, before moving
    outputs = plan_outputs(out, [m.spec for m in loaded], separate)
    settings = {"device": str(dev), "precision": prec, "dtype": dtype, "batch_size": batch}
    for m in loaded:
        m.module.to(dev)  # outside inference mode: a caller's module stays trainable
    with contextlib.ExitStack() as stack:
        stack.enter_context(devices.reproducible())
        stack.enter_context(torch.inference_mode())
        stack.enter_context(devices.autocast(prec, dev))
        from zcore_fast.embedding.pipeline import probe_dim

        dims = [probe_dim(m, dev) for m in loaded]
        models = [{**fp, "dim": d} for fp, d in zip(fingerprints, dims)]
        config = {
            "source": {
                "kind": images.kind,
                "origin": images.origin,
                "root": images.root,
                "count": len(images.paths),
                "sha256": images.fingerprint(),
            },
            "models": models,
            "outputs": [o.path.name for o in outputs],
            "separate": len(outputs) > 1,
            "dtype": dtype,
            "precision": prec,
            "device": dev.type,
            "batch_size": batch,
        }
        # An interrupted run's record wins over finished outputs: they may be
        # an earlier run's, which the interrupted one is replacing (its record
        # is then the only one that says how far it got), or its own, renamed
        # into place just before a kill took the record's removal with it.
        interrupted = progress_path(out).exists()
        finished = completed(outputs, config) if resume and not interrupted else None
        if finished is not None:
            state = Progress(
                config,
                len(images.paths),
                len(images.paths),
                finished["rows"],
                finished["skipped"],
                finished["seconds"],
            )
            return _result(
                outputs, state, dims, state.done, state.seconds, began, settings, n_workers
            )
        state, before = _run(
            images,
            loaded,
            outputs,
            config,
            out,
            dev,
            resume,
            strict,
            progress,
            checkpoint_every,
            n_workers,
        )
    return _result(outputs, state, dims, before[0], before[1], began, settings, n_workers)


def _run(
    images: ImageList,
    loaded: list[LoadedModel],
    outputs: list[Output],
    config: dict[str, Any],
    out: Path,
    dev: Any,
    resume: bool,
    strict: bool,
    progress: ProgressFn | None,
    checkpoint_every: float,
    n_workers: int,
) -> tuple[Progress, tuple[int, float]]:
    """Opens (or creates) the partial files and the progress record, runs the
    loop and finishes the files. Returns the final progress and the (images
    done, seconds spent) found on resuming."""
    from zcore_fast.embedding.pipeline import Job, run_loop

    record = progress_path(out)
    state, partials = _open(images, outputs, config, out, record, resume)
    before = (state.done, state.seconds)
    try:
        job = Job(
            paths=images.paths,
            names=images.names,
            models=loaded,
            device=dev,
            out_dtype=np.dtype(config["dtype"]),
            batch_size=config["batch_size"],
            workers=n_workers,
            strict=strict,
            partials=[p for _, p in partials],
            progress=state,
            record_path=record,
            on_progress=progress,
            checkpoint_every=checkpoint_every,
        )
        if state.done < state.total:
            if progress is not None:
                progress(state.done, state.total)
            run_loop(job)
        if state.rows == 0:
            _discard(partials, record)
            first = state.skipped[0]
            raise ValueError(
                f"none of the {state.total} images could be read (e.g. {first['path']}: "
                f"{first['reason']}); check the files"
            )
        state.save(record)  # done == total: from here a crash only finalizes again
        name = device_name(dev)
        for output, partial in partials:
            # The manifest first: whoever sees the .npy also finds its manifest.
            write_json(manifest_path(output.path), manifest(output, images, state, name))
            partial.finalize(state.rows)
    finally:
        for _, partial in partials:
            partial.close()
    remove_quietly(record)
    return state, before


def _open(
    images: ImageList,
    outputs: list[Output],
    config: dict[str, Any],
    out: Path,
    record: Path,
    resume: bool,
) -> tuple[Progress, list[tuple[Output, PartialArray]]]:
    """The progress record and partial files of this run: the recorded ones
    when resuming (refused when the settings differ), new ones otherwise."""
    from zcore_fast.embedding.writer import PartialArray, partial_path

    total = len(images.paths)
    leftovers = ", ".join([*(str(partial_path(o.path)) for o in outputs), str(record)])
    fresh = not record.exists()
    if fresh:
        state = Progress(config=config, total=total)
    elif not resume:
        raise FileExistsError(
            f"{out}: an interrupted run left {record.name}; pass --resume (resume=True) to "
            f"continue it, or delete {leftovers} to start over"
        )
    else:
        state = Progress.load(record)
        why = config_mismatch(state.config, config)
        if why:
            raise ValueError(
                f"cannot resume {out}: {why}; rerun with the original settings, or delete "
                f"{leftovers} to start over"
            )
    partials: list[tuple[Output, PartialArray]] = []
    try:
        for output in outputs:
            renamed = not partial_path(output.path).exists() and output.path.exists()
            if not fresh and state.done == total and renamed:
                continue  # finalized just before a crash
            width = sum(config["models"][k]["dim"] for k in output.models)
            dtype = np.dtype(config["dtype"])
            # Every row written: the file may already be cut to them.
            cut = state.rows if not fresh and state.done == total else None
            partial = PartialArray(
                output.path, total, width, dtype, create=fresh, finished_rows=cut
            )
            partials.append((output, partial))
        if fresh:
            state.save(record)
    except BaseException:
        for _, partial in partials:
            partial.close()
            if fresh:  # e.g. the disk cannot hold the next file: leave nothing
                remove_quietly(partial.path)
        raise
    return state, partials


def _discard(partials: list[tuple[Output, PartialArray]], record: Path) -> None:
    for _, partial in partials:
        partial.close()
        remove_quietly(partial.path)
    remove_quietly(record)


def _load_models(
    model: ModelArg | Sequence[ModelArg], weights: Any, transform: Any
) -> list[LoadedModel]:
    from zcore_fast.embedding.families import load_model
    from zcore_fast.embedding.models import module_model
    from zcore_fast.embedding.specs import parse_spec

    many = isinstance(model, (list, tuple))
    items = list(model) if many else [model]
    if not items:
        raise ValueError("no model given: pass a spec string or a torch module")
    weights_list = _per_model(weights, len(items), many, "weights")
    transforms = _per_model(transform, len(items), many, "transform")
    loaded = []
    for item, w, t in zip(items, weights_list, transforms):
        if isinstance(item, str):
            if t is not None:
                raise ValueError(f"{item}: transform= is for torch modules; a spec brings its own")
            loaded.append(load_model(parse_spec(item, w)))
        else:
            if w is not None:
                raise ValueError("weights= is for spec strings; load a module's weights yourself")
            loaded.append(module_model(item, t))
    return loaded


def _per_model(value: Any, n: int, many: bool, name: str) -> list[Any]:
    if value is None:
        return [None] * n
    if not many:
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{name} must be a list with one entry (or None) per model ({n})")
    return list(value)


def _check_numbers(
    dtype: str, batch_size: int | None, workers: int | None, checkpoint_every: float
) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use float16 or float32")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if not checkpoint_every > 0:
        raise ValueError(f"checkpoint_every must be > 0 seconds, got {checkpoint_every!r}")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "embedding images needs PyTorch: pip install 'zcore-fast[embed]'"
        ) from None
    return torch


def _result(
    outputs: list[Output],
    state: Progress,
    dims: list[int],
    done_before: int,
    seconds_before: float,
    began: float,
    settings: dict[str, Any],
    workers: int,
) -> EmbedResult:
    processed = state.done - done_before
    loop_s = state.seconds - seconds_before
    return EmbedResult(
        outputs=[o.path for o in outputs],
        manifests=[manifest_path(o.path) for o in outputs],
        rows=state.rows,
        dims=dims,
        images=state.total,
        skipped=[(s["path"], s["reason"]) for s in state.skipped],
        seconds=round(time.perf_counter() - began, 3),
        images_per_s=round(processed / loop_s, 1) if processed and loop_s > 0 else 0.0,
        resumed_from=done_before if processed else state.done,
        workers=workers,
        **settings,
    )
