"""FiftyOne datasets and views: pick a coreset, write its scores, get its view.

>>> import fiftyone as fo                                                  # doctest: +SKIP
>>> from zcore_fast.integrations.fiftyone import select_coreset
>>> dataset = fo.load_dataset("my-images")                                 # doctest: +SKIP
>>> coreset = select_coreset(dataset, 0.1, embeddings="clip")              # doctest: +SKIP

FiftyOne is imported only when a function here runs (`pip install
'zcore-fast[fiftyone]'`); the rest of zcore-fast never imports it. The App
operator that wraps `select_coreset` lives in `fiftyone_plugin/` beside this
file (`plugin_dir()` gives its path).
"""

from __future__ import annotations

import io
import itertools
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zcore_fast.methods.base import ProgressFn
from zcore_fast.methods.registry import run_method
from zcore_fast.select import Budget

#: Samples read from the database per query: bounds the Python objects alive
#: at once (FiftyOne returns one array object per sample) to one batch.
READ_BATCH = 10_000


class MissingEmbeddingsWarning(UserWarning):
    """Some samples had no embedding and were left out of the selection.

    `count` is how many; `field` the embeddings field(s) read, or "model"."""

    def __init__(self, message: str, count: int, field: str) -> None:
        super().__init__(message)
        self.count = count
        self.field = field


@dataclass(frozen=True)
class CoresetRun:
    """What `run_coreset` did: the coreset view (best first), how many
    samples were scored, which were left out (no embedding), and the method's
    name, score name and parameters (`zcore_fast.methods.base.Selection`)."""

    view: Any
    scored: int
    left_out: list[str]
    method: str
    score_name: str | None
    params: dict[str, Any]


def plugin_dir() -> Path:
    """The folder of the FiftyOne plugin (the `select_coreset` operator).

    Register it by putting it (or a link to it) under FiftyOne's plugins
    directory, or by pointing FIFTYONE_PLUGINS_DIR at a folder that holds it."""
    return Path(__file__).resolve().parent / "fiftyone_plugin"


def select_coreset(
    samples: Any,
    budget: Budget,
    *,
    embeddings: str | Sequence[str] | np.ndarray | None = None,
    model: Any = None,
    method: str = "zcore",
    seed: int = 0,
    score_field: str | None = "zcore_score",
    saved_view: str | None = None,
    progress: ProgressFn | None = None,
    embed_options: dict[str, Any] | None = None,
    read_batch: int = READ_BATCH,
    **options: Any,
) -> Any:
    """Selects a coreset of a FiftyOne dataset or view; returns its view.

    Args:
        samples: a `fo.Dataset` or `fo.DatasetView`.
        budget: fraction in (0, 1] or sample count (as `zcore_fast.select`),
            of the samples that have an embedding.
        embeddings: a field name (a `VectorField` or list of numbers per
            sample); a list of field names, concatenated along dimensions; or
            an array with one row per sample of `samples`, in its order.
            With `model`, an optional field to store the computed embeddings
            in (so a later call can read them instead of embedding again).
        model: instead of stored embeddings: a FiftyOne model
            (`fiftyone.core.models.Model`, e.g. from `fiftyone.zoo.load_zoo_model`),
            run through `samples.compute_embeddings`; or a torch module or a
            `zcore_fast.embed` model spec ("timm:resnet18", ...), run through
            `zcore_fast.embed` over the samples' `filepath`s.
        method: one of `zcore_fast.METHODS`.
        seed: seeds every random step; the same seed gives the same coreset.
        score_field: the sample field that gets each sample's score (the
            ZCore score for zcore, the method's own score otherwise, see
            `zcore_fast.methods.base.Selection.score_name`), written in one
            bulk `set_values`; samples without an embedding get None (no stale
            score of an earlier run survives). Random selection has no score
            and writes nothing: the view's order is its draw. None writes
            nothing.
        saved_view: a name to save the coreset view under in the dataset
            (`dataset.load_saved_view(name)`); an existing view of that name
            is replaced.
        progress: progress(done, total), as `zcore_fast.select_with`.
        embed_options: keyword arguments for `zcore_fast.embed` when `model`
            is a torch module or spec (weights, transform, batch_size,
            workers, device, ...).
        read_batch: samples read from the database per query.
        **options: the method's options (`zcore_fast.methods.registry.method_options`),
            e.g. n_sample, sample_dim, redund_nn, redund_exp, rand_init for
            zcore; `threads`; `labels` as a field path such as
            "ground_truth.label", or an array with one label per sample of
            `samples` (those of the samples left out are dropped).

    Returns:
        `samples.select(ids, ordered=True)` of the coreset: best first, in
        the method's order (as `zcore_fast.select_with`).

    Warns:
        MissingEmbeddingsWarning: when samples have no embedding (the field is
            missing or None, or `model` could not read the image); they are
            left out of the selection and the warning gives their count.

    Raises:
        ValueError: embeddings of different dimensions (the message names the
            first sample that differs), no sample with an embedding, bad
            arguments; what `zcore_fast.select_with` raises.
    """
    run = run_coreset(
        samples,
        budget,
        embeddings=embeddings,
        model=model,
        method=method,
        seed=seed,
        score_field=score_field,
        saved_view=saved_view,
        progress=progress,
        embed_options=embed_options,
        read_batch=read_batch,
        **options,
    )
    if run.left_out:
        what = _describe(embeddings, model)
        warnings.warn(
            MissingEmbeddingsWarning(
                f"{len(run.left_out)} of {run.scored + len(run.left_out)} samples have no "
                f"embedding ({what}) and were left out of the selection",
                len(run.left_out),
                what,
            ),
            stacklevel=2,
        )
    return run.view


def run_coreset(
    samples: Any,
    budget: Budget,
    *,
    embeddings: str | Sequence[str] | np.ndarray | None = None,
    model: Any = None,
    method: str = "zcore",
    seed: int = 0,
    score_field: str | None = "zcore_score",
    saved_view: str | None = None,
    progress: ProgressFn | None = None,
    embed_options: dict[str, Any] | None = None,
    read_batch: int = READ_BATCH,
    **options: Any,
) -> CoresetRun:
    """`select_coreset`, returning a `CoresetRun` (the view, the ids left
    out, the method's parameters) instead of warning about samples left out."""
    fo = _import_fiftyone()
    if not isinstance(samples, fo.core.collections.SampleCollection):
        raise TypeError(f"samples must be a FiftyOne dataset or view, got {type(samples).__name__}")
    if isinstance(read_batch, bool) or not isinstance(read_batch, int) or read_batch < 1:
        raise ValueError(f"read_batch must be a positive integer, got {read_batch!r}")
    ids, rows, left_out = _embeddings(samples, embeddings, model, embed_options, read_batch)
    if len(ids) == 0:
        raise ValueError(
            f"no sample of the {len(left_out)} given has an embedding "
            f"({_describe(embeddings, model)}); compute them first"
        )
    labels = options.get("labels")
    if isinstance(labels, str):
        options["labels"] = _read_labels(samples, labels, ids, read_batch)
    elif left_out and labels is not None and np.ndim(labels) == 1:
        # One label per sample of the collection: keep those of the samples scored.
        every = np.asarray(samples.values("id"), dtype=str)
        if len(labels) == len(every):
            options["labels"] = np.asarray(labels)[np.isin(every, ids)]
    selection = run_method(method, rows, budget, seed=seed, progress=progress, **options)
    if score_field is not None and selection.scores is not None:
        _write_scores(samples, score_field, ids, selection.scores, left_out)
    view = samples.select(ids[selection.indices].tolist(), ordered=True)
    if saved_view is not None:
        # save_view belongs to the root dataset, also for views of views.
        samples._root_dataset.save_view(saved_view, view, overwrite=True)
    return CoresetRun(
        view,
        len(ids),
        left_out,
        selection.method,
        selection.score_name,
        selection.params,
    )


def _import_fiftyone() -> Any:
    try:
        import fiftyone as fo
    except ImportError as e:
        raise ImportError(
            "zcore_fast.integrations.fiftyone needs FiftyOne: pip install 'zcore-fast[fiftyone]'"
        ) from e
    return fo


def _describe(embeddings: object, model: object) -> str:
    if model is not None:
        return "model"
    if isinstance(embeddings, str):
        return f"field {embeddings!r}"
    if isinstance(embeddings, (list, tuple)):
        return f"fields {', '.join(map(repr, embeddings))}"
    return "array"


def _embeddings(
    samples: Any,
    embeddings: object,
    model: Any,
    embed_options: dict[str, Any] | None,
    read_batch: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ids of the samples with an embedding, in the collection's order; their
    rows; ids of those without)."""
    if model is not None:
        if embeddings is not None and not isinstance(embeddings, str):
            raise TypeError(
                "with model=, embeddings can only name a field to store the embeddings in"
            )
        if embed_options and _is_fiftyone_model(model):
            raise ValueError("embed_options are for zcore_fast.embed, not FiftyOne models")
        if _is_fiftyone_model(model):
            return _zoo_model(samples, model, embeddings, read_batch)
        return _embed_files(samples, model, embeddings, embed_options or {})
    if embed_options:
        raise ValueError("embed_options need model=")
    if embeddings is None:
        raise ValueError("give embeddings= (a field name, a list of them, or an array) or model=")
    if isinstance(embeddings, str):
        return _read_fields(samples, [embeddings], read_batch)
    if isinstance(embeddings, (list, tuple)) and all(isinstance(f, str) for f in embeddings):
        if not embeddings:
            raise ValueError("embeddings is an empty list of fields")
        return _read_fields(samples, list(embeddings), read_batch)
    rows = np.asarray(embeddings)
    ids = np.asarray(samples.values("id"), dtype=str)
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ValueError(
            f"the embeddings array has shape {rows.shape}; it needs one row per sample "
            f"({len(ids)}, D), in the collection's order"
        )
    return ids, rows, []


def _is_fiftyone_model(model: object) -> bool:
    import fiftyone.core.models as fom

    return isinstance(model, fom.Model)


def _read_fields(
    samples: Any, fields: list[str], read_batch: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads `fields` of every sample that has all of them, `read_batch`
    samples a query, into one (N, D) array in the collection's order."""
    schema = samples.get_field_schema(flat=True)
    for f in fields:
        if f not in schema:
            raise ValueError(
                f"the samples have no field {f!r}; their fields: {', '.join(sorted(schema))}"
            )
    present = samples
    for f in fields:
        present = present.exists(f)  # filtered in the database, not here
    ids = np.asarray(present.values("id"), dtype=str)
    left_out = _left_out(samples, ids)
    if len(ids) == 0:
        return ids, np.empty((0, 0), np.float32), left_out
    # Rows go where their id sits in `ids` (the view's order), whatever order
    # the database returns a batch in: a sorted copy and searchsorted, no dict.
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    rows: np.ndarray | None = None
    dims: list[int] = []
    for start in range(0, len(ids), read_batch):
        batch = ids[start : start + read_batch].tolist()
        got_ids, columns = _fetch(present.select(batch), fields)
        parts = [_stack(f, got_ids, col) for f, col in zip(fields, columns)]
        if not dims:
            dims = [p.shape[1] for p in parts]
        for f, p, d, col in zip(fields, parts, dims, columns):
            if p.shape[1] != d:
                raise _dimension_error(f, got_ids, col, d)
        block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if rows is None:
            rows = np.empty((len(ids), block.shape[1]), dtype=block.dtype)
        elif block.dtype != rows.dtype:
            rows = rows.astype(np.result_type(rows.dtype, block.dtype), copy=False)
        rows[order[np.searchsorted(sorted_ids, np.asarray(got_ids, dtype=str))]] = block
    assert rows is not None
    return ids, rows, left_out


def _fetch(view: Any, fields: list[str]) -> tuple[list[str], list[Any]]:
    """(ids, one column per field) of the samples of `view`.

    FiftyOne stores a vector field as zlib-compressed .npy bytes, and its
    `values()` decodes them one `np.load` at a time (about 35 times the
    database read). Here the raw bytes are fetched and decoded in bulk
    (`_decode_vectors`); any column that is not such bytes (lists of numbers),
    or whose vectors differ in length or type, is read through FiftyOne's own
    decoding instead."""
    try:
        got_ids, *raw = view.values(["id", *fields], _raw=True)
    except TypeError:  # a FiftyOne without the raw option
        return _decoded_by_fiftyone(view, fields)
    columns: list[Any] = []
    for col in raw:
        if col and isinstance(col[0], bytes):
            decoded = _decode_vectors(col)
            if decoded is None:
                return _decoded_by_fiftyone(view, fields)
            col = decoded
        columns.append(col)
    return got_ids, columns


def _decoded_by_fiftyone(view: Any, fields: list[str]) -> tuple[list[str], list[Any]]:
    got_ids, *columns = view.values(["id", *fields])
    return got_ids, columns


def _decode_vectors(blobs: list[Any]) -> np.ndarray | None:
    """The (n, D) array of n vectors serialized as FiftyOne does
    (`fiftyone.core.utils.serialize_numpy_array`: zlib-compressed .npy), or
    None unless all are 1-D arrays of the same dtype and length. One
    decompression per vector (in C, through map), one header parsed."""
    if not all(map(isinstance, blobs, itertools.repeat(bytes))):
        return None
    try:
        plain = list(map(zlib.decompress, blobs))
        with io.BytesIO(plain[0]) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
            header = f.tell()
    except (zlib.error, ValueError):
        return None
    size = len(plain[0])
    if len(shape) != 1 or dtype.kind not in "fiu" or size != header + shape[0] * dtype.itemsize:
        return None
    sizes = np.fromiter(map(len, plain), dtype=np.int64, count=len(plain))
    if (sizes != size).any():
        return None
    packed = np.frombuffer(b"".join(plain), dtype=np.uint8).reshape(len(plain), size)
    if not (packed[:, :header] == packed[0, :header]).all():
        return None  # same length, other dtype or shape
    return np.ascontiguousarray(packed[:, header:]).view(dtype)


def _stack(field: str, ids: list[str], values: Any) -> np.ndarray:
    """One field of a batch as a 2-D float array; a clear error naming the
    first sample whose vector differs in length (or is not a vector)."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return values if values.dtype.kind == "f" else values.astype(np.float32)
    try:
        block = np.stack(values)
    except ValueError:
        # Only on this error path is there a look at single samples.
        lengths = [np.size(v) for v in values]
        raise _dimension_error(field, ids, values, lengths[0]) from None
    if block.ndim != 2:
        raise ValueError(
            f"field {field!r} of sample {ids[0]} holds an array of shape "
            f"{np.shape(values[0])}; embeddings must be 1-D vectors"
        )
    if block.dtype.kind not in "fiu":
        raise ValueError(f"field {field!r} holds {block.dtype} values, not numbers")
    if block.dtype.kind != "f":
        block = block.astype(np.float32)
    return block


def _dimension_error(field: str, ids: list[str], values: list[Any], expected: int) -> ValueError:
    for sample_id, v in zip(ids, values):
        if np.ndim(v) != 1 or np.size(v) != expected:
            return ValueError(
                f"embeddings of different dimensions in field {field!r}: sample {sample_id} "
                f"has shape {np.shape(v)}, others have ({expected},). Recompute that "
                "sample's embedding with the same model, or clear it "
                f"(sample[{field!r}] = None; sample.save()) to leave the sample out"
            )
    return ValueError(f"embeddings of different dimensions in field {field!r}")


def _left_out(samples: Any, ids: np.ndarray) -> list[str]:
    """Ids of the samples of `samples` not in `ids` (a subset of them)."""
    if samples.count() == len(ids):
        return []
    every = np.asarray(samples.values("id"), dtype=str)
    return every[~np.isin(every, ids)].tolist()


def _zoo_model(
    samples: Any, model: Any, field: str | None, read_batch: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeds with a FiftyOne model through `compute_embeddings`."""
    if field is not None:
        samples.compute_embeddings(model, embeddings_field=field)
        return _read_fields(samples, [field], read_batch)
    ids = np.asarray(samples.values("id"), dtype=str)
    out = samples.compute_embeddings(model)
    if isinstance(out, np.ndarray) and out.ndim == 2:
        return ids, out, []
    # skip_failures: the samples whose image could not be read get None (only
    # then is the result a list, walked here once).
    ok = np.fromiter((v is not None for v in out), dtype=bool, count=len(out))
    kept = [v for v in out if v is not None]
    rows = _stack("model", ids[ok].tolist(), kept) if kept else np.empty((0, 0), np.float32)
    return ids[ok], rows, ids[~ok].tolist()


def _embed_files(
    samples: Any, model: Any, field: str | None, embed_options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeds the samples' images with `zcore_fast.embed` (torch module or
    spec); images it cannot read are left out."""
    from zcore_fast.embedding import embed

    ids_list, paths_list = samples.values(["id", "filepath"])
    ids = np.asarray(ids_list, dtype=str)
    paths = np.asarray(paths_list, dtype=str)
    with tempfile.TemporaryDirectory(prefix="zcore-fiftyone-") as tmp:
        out = Path(tmp) / "embeddings.npy"
        result = embed(paths.tolist(), out, model, **embed_options)
        rows = np.load(out)
    # FiftyOne stores absolute, normalised paths, as embed reports the skipped
    # ones; the row count below checks that they matched.
    skipped = np.asarray([p for p, _ in result.skipped], dtype=str)
    ok = ~np.isin(paths, skipped)
    if int(ok.sum()) != rows.shape[0]:
        raise RuntimeError(
            f"zcore_fast.embed returned {rows.shape[0]} rows for {int(ok.sum())} readable images"
        )
    kept = ids[ok]
    if field is not None:
        values = dict(zip(kept.tolist(), list(rows)))
        values.update(dict.fromkeys(ids[~ok].tolist()))
        samples.set_values(field, values, key_field="id")
    return kept, rows, ids[~ok].tolist()


def _read_labels(samples: Any, path: str, ids: np.ndarray, read_batch: int) -> np.ndarray:
    """The values of `path` (e.g. "ground_truth.label") for the samples
    `ids`, in that order."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    labels = np.empty(len(ids), dtype=object)
    for start in range(0, len(ids), read_batch):
        got_ids, values = samples.select(ids[start : start + read_batch].tolist()).values(
            ["id", path]
        )
        labels[order[np.searchsorted(sorted_ids, np.asarray(got_ids, dtype=str))]] = values
    if None in labels.tolist():
        raise ValueError(f"labels field {path!r} is missing on some samples with embeddings")
    return labels


def _write_scores(
    samples: Any, field: str, ids: np.ndarray, scores: np.ndarray, left_out: list[str]
) -> None:
    """One bulk set_values: score for each scored sample, None for the rest
    (so no stale score of an earlier run survives on a sample left out)."""
    values: dict[str, float | None] = dict(
        zip(ids.tolist(), np.asarray(scores, dtype=np.float64).tolist())
    )
    values.update(dict.fromkeys(left_out))
    samples.set_values(field, values, key_field="id")
