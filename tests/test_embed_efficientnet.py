"""The ImageNet-pretrained EfficientNet-Lite0 from PyPI (DESIGN.md section 8)
through a factory spec, on real Fashion-MNIST images written to PNG: the rows
are exactly a direct forward pass of the same model on the same tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embed_helpers import DATA, fashion_mnist_pngs

torch = pytest.importorskip("torch")  # the `test` extra installs these; CI runs them for real
pytest.importorskip("efficientnet_lite_pytorch")
from zcore_fast.embedding import embed  # noqa: E402
from zcore_fast.embedding.zoo import efficientnet_lite0  # noqa: E402

SPEC = "zcore_fast.embedding.zoo:efficientnet_lite0"
BATCH = 16
N = 32


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fashion")
    return folder, fashion_mnist_pngs(folder, N)


@pytest.fixture(scope="module")
def direct(pngs) -> np.ndarray:
    """Features from the model itself, batch by batch as embed forms them."""
    from PIL import Image

    _, paths = pngs
    model, transform = efficientnet_lite0()
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        return torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]).numpy()


def test_rows_equal_the_direct_forward_pass(pngs, direct, tmp_path) -> None:
    folder, paths = pngs
    out32 = embed(
        folder,
        tmp_path / "f32.npy",
        SPEC,
        dtype="float32",
        batch_size=BATCH,
        workers=1,
        device="cpu",
    )
    emb32 = np.load(out32.outputs[0])
    assert emb32.shape == (N, 1280) and out32.dims == [1280]
    np.testing.assert_array_equal(emb32, direct)
    # float16 output (the default), from a list file naming the first batch
    listing = tmp_path / "first.txt"
    listing.write_text("".join(f"{p}\n" for p in paths[:BATCH]))
    out16 = embed(listing, tmp_path / "f16.npy", SPEC, batch_size=BATCH, workers=0, device="cpu")
    emb16 = np.load(out16.outputs[0])
    assert emb16.dtype == np.float16
    np.testing.assert_array_equal(emb16, direct[:BATCH].astype(np.float16))
    manifest = json.loads(out16.manifests[0].read_text())
    assert manifest["images"] == [str(p) for p in paths[:BATCH]]
    assert manifest["config"]["models"][0]["model"] == SPEC
    assert "Normalize(mean=(0.498" in manifest["config"]["models"][0]["preprocessing"]


def test_features_are_the_pretrained_ones(direct) -> None:
    # ImageNet features separate Fashion-MNIST classes far better than chance
    # (10 %): leave-one-out 1-NN on the N images.
    labels = np.load(DATA / "fashion_mnist_48.npz")["labels"][:N]
    f = direct / np.linalg.norm(direct, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    accuracy = (labels[sim.argmax(1)] == labels).mean()
    assert accuracy >= 0.5
