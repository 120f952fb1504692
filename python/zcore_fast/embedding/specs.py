"""Model spec strings (`open_clip:ViT-L-14`, `timm:resnet18`, `torchvision:resnet18`,
`package.module:factory`): parsing and validation only, without importing torch."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The `weights` value that asks for untrained (randomly initialised, seeded) weights.
RANDOM = "random"

ACCEPTED_FORMS = (
    "open_clip:ARCH --pretrained PATH|TAG|random (e.g. open_clip:ViT-L-14)",
    "timm:NAME --weights PATH|random (e.g. timm:resnet18)",
    "torchvision:NAME --weights PATH|TAG|random (e.g. torchvision:resnet18)",
    "package.module:factory [--weights PATH] (a function returning a torch module, "
    "or (module, transform))",
)

_KINDS = ("open_clip", "timm", "torchvision")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `--model` value plus its weights.

    `kind` is "open_clip", "timm", "torchvision" or "factory"; `name` is the
    architecture, or "module:function" for a factory; `weights` is a file
    path, a tag, "random" or None (a factory that loads its own weights).
    """

    kind: str
    name: str
    weights: str | None = None

    @property
    def spec(self) -> str:
        """The spec string as the user writes it."""
        return self.name if self.kind == "factory" else f"{self.kind}:{self.name}"


def parse_spec(text: str, weights: str | None = None) -> ModelSpec:
    """Parses a model spec string; raises ValueError listing the accepted forms."""
    kind, sep, name = text.partition(":")
    if sep and name and kind in _KINDS:
        return ModelSpec(kind=kind, name=name, weights=weights)
    if sep and name and _DOTTED.match(kind) and _DOTTED.match(name):
        return ModelSpec(kind="factory", name=text, weights=weights)
    raise ValueError(f"unknown model spec {text!r}; use one of: " + "; ".join(ACCEPTED_FORMS))


def slug(spec: str) -> str:
    """A file-name-safe form of a spec, for `--separate` output names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")
