"""`embed` end to end on a tiny random-weights open_clip model: rows, skipped
files, resume (byte-identical), refusals, several models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embed_helpers import tiny_clip_spec, write_images

torch = pytest.importorskip("torch")  # the `test` extra installs it; CI runs these for real
pytest.importorskip("open_clip")
from torchvision.transforms import ToTensor  # noqa: E402
from zcore_fast.embedding import embed  # noqa: E402

FAST = {"batch_size": 4, "workers": 0, "device": "cpu"}


class StopRunError(Exception):
    """Raised from the progress callback to interrupt a run deterministically."""


def stop_after(batches: int):
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) > batches:  # the first call reports the starting point
            raise StopRunError

    return progress


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    return tiny_clip_spec(tmp_path_factory.mktemp("cfg"))


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    paths = write_images(folder, 18)
    paths[5].write_bytes(b"not an image")  # corrupt
    paths[11].write_bytes(paths[11].read_bytes()[:60])  # truncated PNG
    return folder, paths


def test_rows_follow_source_order_and_skip_unreadable(spec, images, tmp_path) -> None:
    folder, paths = images
    out = tmp_path / "emb.npy"
    result = embed(folder, out, spec, weights="random", **FAST)
    emb = np.load(out)
    assert emb.shape == (16, 24) and emb.dtype == np.float16
    assert result.rows == 16 and result.images == 18 and result.dims == [24]
    manifest = json.loads((tmp_path / "emb.manifest.json").read_text())
    names = [str(p.relative_to(folder)) for p in paths]
    assert manifest["images"] == [n for i, n in enumerate(names) if i not in (5, 11)]
    assert [s["index"] for s in manifest["skipped"]] == [5, 11]
    assert all(s["reason"].startswith("unreadable") for s in manifest["skipped"])
    assert manifest["rows"] == 16 and manifest["dim"] == 24 and manifest["dtype"] == "float16"
    assert manifest["columns"] == [{"model": spec, "start": 0, "stop": 24}]
    assert manifest["config"]["models"][0]["weights"] == {"random": True, "seed": 0}
    assert "Normalize" in manifest["config"]["models"][0]["preprocessing"]
    # the file is exactly what np.save writes (header cut to 16 rows), nothing left behind
    np.save(tmp_path / "ref.npy", emb)
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "emb.manifest.json",
        "emb.npy",
        "images",
        "ref.npy",
    ]


def test_rows_equal_a_direct_forward_pass(spec, tmp_path) -> None:
    import open_clip
    from PIL import Image

    paths = write_images(tmp_path / "im", 6)
    out = tmp_path / "e.npy"
    embed(tmp_path / "im", out, spec, weights="random", dtype="float32", **FAST)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model, _, pre = open_clip.create_model_and_transforms(
            spec.split(":")[1], pretrained=None, pretrained_text=False
        )
    model.eval()
    with torch.inference_mode():
        x = torch.stack([pre(Image.open(p).convert("RGB")) for p in paths])
        direct = torch.cat([model.encode_image(x[:4]), model.encode_image(x[4:])]).numpy()
    np.testing.assert_array_equal(np.load(out), direct)


def test_strict_fails_on_the_first_unreadable_image(spec, images, tmp_path) -> None:
    folder, paths = images
    with pytest.raises(ValueError, match=rf"{paths[5].name}: unreadable.*--strict"):
        embed(folder, tmp_path / "s.npy", spec, weights="random", strict=True, **FAST)
    assert not (tmp_path / "s.npy").exists()
    # fix the file, resume: the same bytes as a clean run over the fixed folder
    from PIL import Image

    for broken in (paths[5], paths[11]):
        Image.new("RGB", (33, 35), (200, 30, 90)).save(broken, format="PNG")
    embed(folder, tmp_path / "s.npy", spec, weights="random", strict=True, resume=True, **FAST)
    embed(folder, tmp_path / "clean.npy", spec, weights="random", **FAST)
    assert (tmp_path / "s.npy").read_bytes() == (tmp_path / "clean.npy").read_bytes()


def test_all_unreadable_is_an_error_and_leaves_nothing(spec, tmp_path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 3 images could be read"):
        embed(folder, tmp_path / "x.npy", spec, weights="random", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_resume_after_interruption_is_byte_identical(spec, images, tmp_path, dtype) -> None:
    folder, _ = images
    whole, part = tmp_path / "whole.npy", tmp_path / "part.npy"
    embed(folder, whole, spec, weights="random", dtype=dtype, **FAST)
    with pytest.raises(StopRunError):
        embed(folder, part, spec, weights="random", dtype=dtype, progress=stop_after(2), **FAST)
    assert not part.exists()
    record = json.loads((tmp_path / "part.npy.progress.json").read_text())
    assert record["done"] == 8 and record["rows"] == 7  # 2 batches of 4, img005 skipped
    with pytest.raises(FileExistsError, match="pass --resume"):
        embed(folder, part, spec, weights="random", dtype=dtype, **FAST)
    seen = []
    result = embed(
        folder,
        part,
        spec,
        weights="random",
        dtype=dtype,
        resume=True,
        progress=lambda d, t: seen.append(d),
        **FAST,
    )
    assert seen[0] == 8 and seen[-1] == 18 and result.resumed_from == 8
    assert part.read_bytes() == whole.read_bytes()
    m_whole = json.loads((tmp_path / "whole.manifest.json").read_text())
    m_part = json.loads((tmp_path / "part.manifest.json").read_text())
    for key in ("images", "skipped", "rows", "columns", "config"):
        if key != "config":
            assert m_part[key] == m_whole[key]
    assert not (tmp_path / "part.npy.progress.json").exists()
    assert not (tmp_path / "part.npy.partial").exists()


def test_resume_rewrites_rows_the_record_does_not_claim(spec, images, tmp_path) -> None:
    # A kill -9 after rows were written but before the record claimed them:
    # garbage beyond the record must be overwritten on resume.
    folder, _ = images
    whole, part = tmp_path / "whole.npy", tmp_path / "part.npy"
    embed(folder, whole, spec, weights="random", **FAST)
    with pytest.raises(StopRunError):
        embed(folder, part, spec, weights="random", progress=stop_after(3), **FAST)
    arr = np.load(tmp_path / "part.npy.partial", mmap_mode="r+")
    record = json.loads((tmp_path / "part.npy.progress.json").read_text())
    arr[record["rows"] - 3 :] = 7.0  # rows past a pretend older record, and unwritten ones
    arr.flush()
    del arr
    record.update(done=4, rows=4, skipped=[])
    (tmp_path / "part.npy.progress.json").write_text(json.dumps(record))
    embed(folder, part, spec, weights="random", resume=True, **FAST)
    assert part.read_bytes() == whole.read_bytes()


def test_mismatched_resume_is_refused(spec, images, tmp_path) -> None:
    folder, _ = images
    out = tmp_path / "m.npy"
    with pytest.raises(StopRunError):
        embed(folder, out, spec, weights="random", progress=stop_after(1), **FAST)
    cases = [
        ({"dtype": "float32"}, "dtype was 'float16', now 'float32'"),
        ({"batch_size": 8}, "batch_size was 4, now 8"),
        ({"model": "timm:resnet10t"}, "the models differ"),
    ]
    for change, message in cases:
        kwargs = {**FAST, "weights": "random", "model": spec, **change}
        with pytest.raises(ValueError, match=f"cannot resume .*{message}"):
            embed(folder, out, resume=True, **kwargs)
    write_images(folder, 1, seed=9, size=(50, 50), fmt="jpg")
    with pytest.raises(ValueError, match=r"image list changed \(18 images then, 19 now\)"):
        embed(folder, out, spec, weights="random", resume=True, **FAST)
    (folder / "img000.jpg").unlink()
    other = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(ValueError, match="the models differ"):
        embed(folder, out, other, resume=True, **FAST)


def test_resume_of_a_finished_run_is_a_no_op_and_checks_settings(spec, images, tmp_path) -> None:
    folder, _ = images
    out = tmp_path / "done.npy"
    embed(folder, out, spec, weights="random", **FAST)
    before = out.stat().st_mtime_ns
    result = embed(folder, out, spec, weights="random", resume=True, **FAST)
    assert result.resumed_from == 18 and result.images_per_s == 0 and result.rows == 16
    assert out.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match=r"from another run .*dtype"):
        embed(folder, out, spec, weights="random", resume=True, dtype="float32", **FAST)


def test_several_models_concatenated_or_separate(spec, images, tmp_path) -> None:
    folder, _ = images
    flat = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    models = [spec, flat]
    both = embed(folder, tmp_path / "both.npy", models, weights=["random", None], **FAST)
    assert both.dims == [24, 12] and np.load(tmp_path / "both.npy").shape == (16, 36)
    sep = embed(
        folder,
        tmp_path / "sep.npy",
        models,
        weights=["random", None],
        separate=True,
        workers=2,
        batch_size=4,
        device="cpu",
    )
    names = [p.name for p in sep.outputs]
    assert names == [
        f"sep.open_clip_{spec.split(':')[1]}.npy",
        "sep.module_torch.nn.modules.container.Sequential.npy",
    ]
    joined = np.concatenate([np.load(p) for p in sep.outputs], axis=1)
    np.testing.assert_array_equal(joined, np.load(tmp_path / "both.npy"))
    cols = json.loads(sep.manifests[1].read_text())["columns"]
    assert cols == [
        {"model": "module:torch.nn.modules.container.Sequential", "start": 0, "stop": 12}
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "resnet18"}, ValueError, "unknown model spec 'resnet18'; use one of: open_clip"),
        ({"model": "open_clip:ViT-B-32", "weights": None}, ValueError, "needs weights: --pretra"),
        ({"model": "open_clip:ViT-X-99", "weights": "random"}, ValueError, "unknown open_clip"),
        ({"model": "timm:resnet18", "weights": "x/w.pth"}, FileNotFoundError, "no such weights"),
        ({"dtype": "int8"}, ValueError, "unknown dtype"),
        ({"batch_size": 0}, ValueError, "batch_size must be"),
        ({"device": "tpu:0"}, ValueError, "unknown device"),
        ({"precision": "fp8"}, ValueError, "unknown precision"),
        ({"output": "emb.csv"}, ValueError, "written as .npy"),
        ({"output": "nowhere/emb.npy"}, FileNotFoundError, "does not exist; create it"),
        ({"model": torch.nn.Conv2d(3, 4, 3)}, TypeError, r"returned \(1, 4, 222, 222\)"),
        ({"model": torch.nn.Flatten(), "transform": ToTensor()}, ValueError, "different shapes"),
    ],
)
def test_bad_arguments_are_clear_errors(spec, images, tmp_path, kwargs, error, match) -> None:
    folder, _ = images
    args = {"model": spec, "weights": "random", "output": tmp_path / "o.npy", **FAST, **kwargs}
    if not isinstance(args["model"], str):
        args.pop("weights")
    if str(args["output"]).startswith(("emb", "nowhere")):
        args["output"] = tmp_path / args["output"]
    with pytest.raises(error, match=match):
        embed(folder, **args)
