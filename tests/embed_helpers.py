"""Shared helpers of the embedding tests: small images on disk and a tiny
open_clip architecture (random weights; CI reaches no model hub)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
#: A ViT small enough to run a few dozen 32 px images in well under a second.
TINY_CLIP = "zcf-tiny-vit"
_TINY_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "patch_size": 8, "head_width": 24},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def tiny_clip_spec(tmp_dir: Path) -> str:
    """Registers the tiny open_clip architecture (once per process) and
    returns its spec."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        cfg = tmp_dir / f"{TINY_CLIP}.json"
        cfg.write_text(json.dumps(_TINY_CFG))
        open_clip.add_model_config(cfg)
    return f"open_clip:{TINY_CLIP}"


def write_images(folder: Path, n: int, *, seed: int = 0, size=(40, 30), fmt: str = "png"):
    """n random RGB images of varied sizes, some in a sub-folder; returns their
    paths in the order a folder scan gives."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        w, h = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        path = folder / ("sub" if i % 4 == 3 else "") / f"img{i:03d}.{fmt}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return sorted(paths, key=lambda p: str(p.relative_to(folder)).encode())


def fashion_mnist_pngs(folder: Path, n: int = 48) -> list[Path]:
    """The first n Fashion-MNIST test images (tests/data), as grayscale PNGs."""
    from PIL import Image

    images = np.load(DATA / "fashion_mnist_48.npz")["images"][:n]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"fm{i:03d}.png"
        Image.fromarray(pixels).save(path)  # 2-D uint8: grayscale
        paths.append(path)
    return paths
