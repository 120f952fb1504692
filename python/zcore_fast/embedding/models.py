"""Turns a model spec, or a user's torch module, into an image encoder: a
module whose forward maps a (B, 3, H, W) batch to (B, D) features, the
transform that makes one such image tensor from a PIL image, and a record of
the weights used."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zcore_fast.embedding.hashing import describe, file_sha256, state_sha256
from zcore_fast.embedding.specs import RANDOM, ModelSpec

#: A PIL image -> (3, H, W) float tensor.
Transform = Callable[[Any], torch.Tensor]

#: ImageNet statistics, for the default transform of a bare module.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Seed of untrained ("random") weights, so that a resumed run rebuilds the same model.
RANDOM_SEED = 0


@dataclass
class LoadedModel:
    """An image encoder ready to run.

    `spec` names it in the manifest; `weights` records where its weights came
    from (`path` and `sha256` of a file, `tag`, or `random`); `state_sha256`
    fingerprints the loaded parameters so a resume can check them.
    """

    spec: str
    module: nn.Module
    transform: Transform
    weights: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What the manifest records and a resumed run must match."""
        return {
            "model": self.spec,
            "weights": self.weights,
            "state_sha256": state_sha256(self.module),
            "preprocessing": describe(self.transform),
        }


def module_model(module: Any, transform: Transform | None = None) -> LoadedModel:
    """Wraps a user's torch module (the API's `model=`), with the default
    transform when none is given."""
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"model must be a spec string or a torch.nn.Module, got {type(module).__name__}"
        )
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable (PIL image -> tensor), got {transform!r}")
    cls = type(module)
    module.eval()
    return LoadedModel(
        spec=f"module:{cls.__module__}.{cls.__qualname__}",
        module=module,
        transform=transform if transform is not None else default_transform(),
        weights={"source": "in-memory module"},
    )


def factory_model(spec: ModelSpec) -> LoadedModel:
    """`package.module:function`: calls function() (function(weights=PATH)
    when weights are given); it returns a module or (module, transform)."""
    module_name, _, func_name = spec.name.partition(":")
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ValueError(
                f"--model {spec.spec}: cannot import {module_name!r} ({e}); install it or run "
                "from the folder that holds it"
            ) from None
        raise
    factory = getattr(mod, func_name, None)
    if not callable(factory):
        raise ValueError(f"--model {spec.spec}: {module_name} has no function {func_name!r}")
    weights: dict[str, Any] = {}
    if spec.weights is None:
        made = factory()
    else:
        made = factory(weights=spec.weights)
        weights = weights_record(spec.weights)
    if isinstance(made, tuple) and len(made) == 2:
        module, transform = made
    else:
        module, transform = made, None
    loaded = module_model(module, transform)
    loaded.spec, loaded.weights = spec.spec, weights or {"source": "factory"}
    return loaded


def weights_record(weights: str) -> dict[str, Any]:
    """The manifest's record of a weights file (path and sha256), tag or `random`."""
    if weights == RANDOM:
        return {"random": True, "seed": RANDOM_SEED}
    if os.path.isfile(weights):
        return {"path": os.path.abspath(weights), "sha256": file_sha256(weights)}
    return {"tag": weights}


def default_transform(size: int = 224) -> Transform:
    """The common ImageNet evaluation transform: resize the short side to
    size * 256/224 (bilinear, antialiased), center-crop `size`, scale to [0, 1],
    normalise with ImageNet mean and std."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(size * 256 // 224, antialias=True),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


#: Held while torch's global generator is seeded: two threads building
#: models at once would otherwise interleave (B's seed restarting A's draws
#: mid-initialisation, and A's restore leaving B's seeded state behind).
_SEEDED = threading.Lock()


@contextlib.contextmanager
def seeded() -> Iterator[None]:
    """Seeds torch's CPU generator for a random initialisation and restores it
    after; one thread at a time (the generator is the process's)."""
    with _SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        yield


def strip_classifier(model: nn.Module, spec: str) -> None:
    """Replaces the final Linear of a classifier with Identity, so the module
    returns pooled features: `fc`, `head`, `heads` or `classifier` (the last
    Linear inside it when it is a Sequential, e.g. VGG's fc7 features)."""
    for attr in ("fc", "head", "heads", "classifier"):
        layer = getattr(model, attr, None)
        if isinstance(layer, nn.Linear):
            setattr(model, attr, nn.Identity())
            return
        if isinstance(layer, nn.Sequential):
            linear = [i for i, m in enumerate(layer) if isinstance(m, nn.Linear)]
            if linear:
                layer[linear[-1]] = nn.Identity()
                return
    raise ValueError(
        f"{spec}: found no Linear classifier (fc, head, heads, classifier) to remove; wrap the "
        "model in a factory (--model package.module:factory) that returns a feature module"
    )
