"""Decoding and preprocessing images in parallel worker processes.

Batches are fixed slices of the image list (batch k = images[k*B:(k+1)*B]),
whatever fails to decode: a resumed run that starts at a batch boundary then
feeds the model exactly the batches an uninterrupted run would, which keeps
the output bytes identical. Unreadable images leave their batch short and are
reported, never raised, here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from zcore_fast.embedding.models import Transform

#: (image index, one tensor per model, or None and why the image was skipped)
Item = tuple[int, Optional[tuple[torch.Tensor, ...]], Optional[str]]


class Batch(NamedTuple):
    """One batch: the image indices that decoded, their stacked tensors (one
    per model; empty when none decoded), the (index, reason) of those that did
    not, and how many images the batch spans."""

    indices: list[int]
    inputs: tuple[torch.Tensor, ...]
    skipped: list[tuple[int, str]]
    size: int


class ImageDataset(Dataset[Item]):
    """Images `paths[start:]`, each decoded once to RGB and passed through
    every model's transform."""

    def __init__(self, paths: Sequence[str], transforms: Sequence[Transform], start: int = 0):
        self.paths = paths
        self.transforms = tuple(transforms)
        self.start = start

    def __len__(self) -> int:
        return len(self.paths) - self.start

    def __getitem__(self, i: int) -> Item:
        index = self.start + i
        path = self.paths[index]
        try:
            image = decode(path)
        except Exception as e:  # any decoder failure means: skip this file
            return index, None, f"unreadable: {type(e).__name__}: {e}"
        try:
            return index, tuple(t(image) for t in self.transforms), None
        except Exception as e:
            return index, None, f"preprocessing failed: {type(e).__name__}: {e}"


def decode(path: str) -> object:
    """Decodes an image file fully to RGB (PIL): grayscale, palette and CMYK
    are converted, alpha is dropped, an animation gives its first frame."""
    from PIL import Image

    with warnings.catch_warnings():
        # PIL warns on e.g. large or palette-with-transparency images; the
        # decode still succeeds and a warning per file would flood the terminal.
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() loads, so truncation raises here


class Collate:
    """Stacks the decodable items of a batch per model (a class, not a
    closure, so it pickles for worker processes)."""

    def __init__(self, n_models: int) -> None:
        self.n_models = n_models

    def __call__(self, items: list[Item]) -> Batch:
        good = [(index, tensors) for index, tensors, _ in items if tensors is not None]
        skipped = [(index, reason or "") for index, tensors, reason in items if tensors is None]
        inputs: tuple[torch.Tensor, ...] = ()
        if good:
            inputs = tuple(_stack([t[k] for _, t in good], k) for k in range(self.n_models))
        return Batch([index for index, _ in good], inputs, skipped, len(items))


def _stack(tensors: list[torch.Tensor], model: int) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(
            f"the transform of model {model + 1} gives tensors of different shapes "
            f"({', '.join(map(str, sorted(shapes)[:3]))}); end it with a resize or crop to a "
            "fixed size"
        )
    return torch.stack(tensors)


def make_loader(
    paths: Sequence[str],
    transforms: Sequence[Transform],
    *,
    start: int,
    batch_size: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader[Item]:
    """Batches of images `paths[start:]` in order (`start` is a multiple of
    `batch_size`), decoded by `workers` processes (0: in this process), pinned
    for fast asynchronous copies to a GPU when `pin_memory`."""
    return DataLoader(
        ImageDataset(paths, transforms, start),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=Collate(len(transforms)),
        pin_memory=pin_memory,
        # Several batches in flight per worker smooth out slow files.
        prefetch_factor=4 if workers else None,
    )
