"""Model specs and loaders: open_clip (file, cached tag, random), timm,
torchvision, factories; and the errors for what cannot be loaded offline."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from embed_helpers import tiny_clip_spec, write_images

torch = pytest.importorskip("torch")  # the `test` extra installs it; CI runs these for real
open_clip = pytest.importorskip("open_clip")
from zcore_fast.embedding import ACCEPTED_FORMS, embed, parse_spec  # noqa: E402
from zcore_fast.embedding.families import load_model  # noqa: E402
from zcore_fast.embedding.models import seeded, strip_classifier  # noqa: E402

FAST = {"batch_size": 4, "workers": 0, "device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    return tiny_clip_spec(tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    write_images(root, 5)
    return root


@pytest.fixture()
def offline_caches(tmp_path, monkeypatch):
    """Empty model caches: nothing is found, as on a machine without them."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_parse_spec_forms_and_unknown_spec() -> None:
    assert parse_spec("open_clip:ViT-L-14", "w.bin").spec == "open_clip:ViT-L-14"
    assert parse_spec("timm:resnet18").kind == "timm"
    f = parse_spec("my_pkg.models:build")
    assert (f.kind, f.name) == ("factory", "my_pkg.models:build")
    for bad in ("resnet18", "open_clip:", "my-pkg:build", ":x", "a.b:c:d"):
        with pytest.raises(ValueError, match="unknown model spec") as err:
            parse_spec(bad)
        assert all(form.split()[0] in str(err.value) for form in ACCEPTED_FORMS)


def test_open_clip_from_a_local_file_equals_the_same_random_weights(spec, folder, tmp_path):
    ref = embed(folder, tmp_path / "ref.npy", spec, weights="random", **FAST)
    weights = tmp_path / "tiny.pt"
    m = load_model(parse_spec(spec, "random"))
    # the saved file holds the whole CLIP (both towers), as real checkpoints do
    with torch.random.fork_rng():
        torch.manual_seed(0)
        full = open_clip.create_model(spec.split(":")[1], pretrained=None, pretrained_text=False)
    torch.save(full.state_dict(), weights)
    out = embed(folder, tmp_path / "file.npy", spec, weights=str(weights), **FAST)
    np.testing.assert_array_equal(np.load(out.outputs[0]), np.load(ref.outputs[0]))
    record = json.loads(out.manifests[0].read_text())["config"]["models"][0]
    assert record["weights"]["path"] == str(weights) and len(record["weights"]["sha256"]) == 64
    assert m.module is not None and type(m.module).__name__ == "VisionTransformer"


def test_open_clip_tag_is_read_from_the_local_cache_only(spec, folder, offline_caches):
    import open_clip.pretrained as pretrained

    arch = spec.split(":")[1]
    pretrained._PRETRAINED[arch] = {
        "tiny_tag": pretrained._pcfg(hf_hub="zcf/tiny-clip/", mean=(0.5,) * 3, std=(0.25,) * 3)
    }
    try:
        with pytest.raises(FileNotFoundError) as err:
            embed(folder, offline_caches / "t.npy", spec, weights="tiny_tag", **FAST)
        message = str(err.value)
        assert "not in the local cache" in message and "never downloads" in message
        assert "--pretrained /path/to/checkpoint" in message
        # put the file where huggingface_hub caches it; then the tag works offline
        snap = offline_caches / "hf" / "models--zcf--tiny-clip" / "snapshots" / ("a" * 40)
        snap.mkdir(parents=True)
        (snap.parent.parent / "refs").mkdir()
        (snap.parent.parent / "refs" / "main").write_text("a" * 40)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            full = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
        torch.save(full.state_dict(), snap / "open_clip_pytorch_model.bin")
        out = embed(folder, offline_caches / "t.npy", spec, weights="tiny_tag", **FAST)
        rec = json.loads(out.manifests[0].read_text())["config"]["models"][0]
        assert rec["weights"]["tag"] == "tiny_tag" and rec["weights"]["path"].startswith(str(snap))
        assert "mean=(0.5, 0.5, 0.5)" in rec["preprocessing"]  # the tag's preprocessing
    finally:
        del pretrained._PRETRAINED[arch]


def test_open_clip_unknown_tag_lists_the_known_ones(folder, tmp_path, offline_caches) -> None:
    with pytest.raises(ValueError, match=r"neither a file nor a known tag .*openai"):
        embed(folder, tmp_path / "x.npy", "open_clip:RN50", weights="laion9000", **FAST)
    with pytest.raises(FileNotFoundError, match="--pretrained /path/to/checkpoint"):
        embed(folder, tmp_path / "x.npy", "open_clip:RN50", weights="openai", **FAST)


def test_timm_from_a_weights_file_gives_pooled_features(folder, tmp_path) -> None:
    import timm

    torch.manual_seed(3)
    net = timm.create_model("resnet10t", pretrained=False).eval()
    torch.save(net.state_dict(), tmp_path / "r10.pth")
    out = embed(
        folder, tmp_path / "t.npy", "timm:resnet10t", weights=str(tmp_path / "r10.pth"), **FAST
    )
    cfg = timm.data.resolve_model_data_config(net)
    transform = timm.data.create_transform(**cfg, is_training=False)
    net.reset_classifier(0)
    from PIL import Image

    names = json.loads(out.manifests[0].read_text())["images"]
    x = torch.stack([transform(Image.open(folder / n).convert("RGB")) for n in names])
    with torch.inference_mode():
        direct = torch.cat([net(x[:4]), net(x[4:])]).numpy()
    np.testing.assert_array_equal(np.load(out.outputs[0]), direct)
    assert out.dims == [512]


def test_torchvision_weights_file_tag_and_offline_error(folder, tmp_path, offline_caches) -> None:
    import torchvision

    torch.manual_seed(4)
    net = torchvision.models.resnet18().eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "r18.pth")  # a training checkpoint
    out = embed(
        folder,
        tmp_path / "v.npy",
        "torchvision:resnet18",
        weights=str(tmp_path / "r18.pth"),
        **FAST,
    )
    assert out.dims == [512]
    with pytest.raises(FileNotFoundError, match=r"torch hub cache .*--weights /path/to/file.pth"):
        embed(folder, tmp_path / "v2.npy", "torchvision:resnet18", weights="IMAGENET1K_V1", **FAST)
    with pytest.raises(ValueError, match="does not fit torchvision:resnet34"):
        embed(
            folder,
            tmp_path / "v3.npy",
            "torchvision:resnet34",
            weights=str(tmp_path / "r18.pth"),
            **FAST,
        )


def test_strip_classifier_keeps_features() -> None:
    nn = torch.nn
    vgg_like = nn.Module()
    vgg_like.classifier = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    strip_classifier(vgg_like, "x")
    assert isinstance(vgg_like.classifier[2], nn.Identity)
    with pytest.raises(ValueError, match="found no Linear classifier"):
        strip_classifier(nn.Sequential(nn.Conv2d(3, 3, 1)), "torchvision:odd")


FACTORY = """
import torch
from torchvision import transforms

def pooled(weights=None):
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    if weights is None:
        return net
    return net, transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])

def broken():
    return "not a module"
"""


def test_factories(folder, tmp_path, monkeypatch) -> None:
    (tmp_path / "zcf_factory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    bare = embed(folder, tmp_path / "a.npy", "zcf_factory_mod:pooled", **FAST)
    assert bare.dims == [12]
    rec = json.loads(bare.manifests[0].read_text())["config"]["models"][0]
    assert "CenterCrop(size=(224, 224))" in rec["preprocessing"]  # the default transform
    (tmp_path / "w.bin").write_bytes(b"weights")
    own = embed(
        folder,
        tmp_path / "b.npy",
        "zcf_factory_mod:pooled",
        weights=str(tmp_path / "w.bin"),
        **FAST,
    )
    rec = json.loads(own.manifests[0].read_text())["config"]["models"][0]
    assert "Resize(size=(8, 8)" in rec["preprocessing"] and rec["weights"]["sha256"]
    with pytest.raises(TypeError, match=r"spec string or a torch\.nn\.Module, got str"):
        embed(folder, tmp_path / "c.npy", "zcf_factory_mod:broken", **FAST)
    with pytest.raises(ValueError, match="has no function 'nope'"):
        embed(folder, tmp_path / "c.npy", "zcf_factory_mod:nope", **FAST)
    with pytest.raises(ValueError, match="cannot import 'zcf_missing_mod'"):
        embed(folder, tmp_path / "c.npy", "zcf_missing_mod:build", **FAST)
    sys.modules.pop("zcf_factory_mod", None)


def test_seeded_initialisations_in_threads_do_not_interleave() -> None:
    """Building a model seeds torch's global generator (service use, issue
    17): threads doing it at once each get the draws of a build alone, and
    the generator is left as found."""

    def build() -> torch.Tensor:
        with seeded():
            first = torch.rand(64)
            time.sleep(0.01)  # another build would run here, were it let in
            return torch.cat([first, torch.rand(64)])

    alone = build()
    before = torch.random.get_rng_state()
    with ThreadPoolExecutor(4) as pool:
        builds = list(pool.map(lambda _: build(), range(8)))
    assert all(torch.equal(b, alone) for b in builds)
    assert torch.equal(torch.random.get_rng_state(), before)
