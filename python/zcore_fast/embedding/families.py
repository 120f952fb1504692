"""Loaders of the model families named by spec prefixes: open_clip, timm and
torchvision. Each needs explicit weights (a local file, a tag whose file is
already in the local cache, or `random`); nothing is ever downloaded."""

from __future__ import annotations

import difflib
import os
from typing import Any, NoReturn

import torch

from zcore_fast.embedding.models import (
    LoadedModel,
    default_transform,
    factory_model,
    seeded,
    strip_classifier,
    weights_record,
)
from zcore_fast.embedding.specs import RANDOM, ModelSpec

_FILE_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt")


def load_model(spec: ModelSpec) -> LoadedModel:
    """Builds the encoder a spec names, on the CPU, in eval mode. Weights are
    never downloaded: a tag works only when its file is already in a local cache."""
    loaders = {
        "open_clip": open_clip_model,
        "timm": timm_model,
        "torchvision": torchvision_model,
        "factory": factory_model,
    }
    loaded = loaders[spec.kind](spec)
    loaded.module.eval()
    return loaded


def open_clip_model(spec: ModelSpec) -> LoadedModel:
    """open_clip:ARCH, image tower only, with --pretrained PATH, TAG or random."""
    open_clip = _require("open_clip", "open_clip_torch")
    arch = spec.name
    if arch not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip architecture {arch!r}"
            f"{_close(arch, open_clip.list_models(), 'open_clip.list_models()')}"
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    weights = _need_weights(spec, "--pretrained", tags)
    # Never fetch tower weights (text towers from Hugging Face, image towers from timm).
    kwargs: dict[str, Any] = {"pretrained_image": False, "pretrained_text": False}
    record = weights_record(weights)
    if weights == RANDOM:
        pretrained = None
    elif os.path.isfile(weights):
        pretrained = weights
    else:
        cfg = open_clip.get_pretrained_cfg(arch, weights)
        if not cfg:
            _not_file_nor_tag(spec, weights, "--pretrained", tags)
        pretrained = _cached_open_clip_file(spec, weights, cfg)
        record.update(path=pretrained, sha256=weights_record(pretrained)["sha256"])
        # What open_clip itself applies for a tag: its preprocessing and activation.
        kwargs.update(
            image_mean=cfg.get("mean"),
            image_std=cfg.get("std"),
            image_interpolation=cfg.get("interpolation"),
            image_resize_mode=cfg.get("resize_mode"),
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        )
    with seeded():
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, **_supported(open_clip.create_model_and_transforms, kwargs)
        )
    # For CLIP and CustomTextCLIP encode_image(x) is visual(x): keep only the
    # image tower, so the text tower never takes device memory.
    visual = getattr(model, "visual", None)
    plain = type(model).__name__ in ("CLIP", "CustomTextCLIP") and visual is not None
    module = visual if plain and isinstance(visual, torch.nn.Module) else _EncodeImage(model)
    return LoadedModel(spec=spec.spec, module=module, transform=preprocess, weights=record)


def timm_model(spec: ModelSpec) -> LoadedModel:
    """timm:NAME with --weights PATH or random; pooled features (no classifier)."""
    timm = _require("timm", "timm")
    if not timm.is_model(spec.name):
        raise ValueError(
            f"unknown timm model {spec.name!r}"
            f"{_close(spec.name, timm.list_models(), 'timm.list_models()')}"
        )
    weights = _need_weights(spec, "--weights", [])
    record = weights_record(weights)
    if weights == RANDOM:
        with seeded():
            model = timm.create_model(spec.name, pretrained=False, num_classes=0)
    elif os.path.isfile(weights):
        # timm's own loader applies the model's checkpoint filter (format
        # conversions) and drops the classifier; "file" with source "" keeps
        # it from looking anywhere but this file.
        overlay = {"file": os.path.abspath(weights), "source": ""}
        model = timm.create_model(
            spec.name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0
        )
    else:
        _not_file_nor_tag(spec, weights, "--weights", [])
    cfg = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**cfg, is_training=False)
    return LoadedModel(spec=spec.spec, module=model, transform=transform, weights=record)


def torchvision_model(spec: ModelSpec) -> LoadedModel:
    """torchvision:NAME with --weights PATH, TAG (e.g. IMAGENET1K_V1, found in
    the torch hub cache) or random; the classifier's last Linear removed."""
    models = _require("torchvision.models", "torchvision")
    if spec.name not in models.list_models():
        raise ValueError(
            f"unknown torchvision model {spec.name!r}"
            f"{_close(spec.name, models.list_models(), 'torchvision.models.list_models()')}"
        )
    enum = models.get_model_weights(spec.name)
    tags = [w.name for w in enum]
    weights = _need_weights(spec, "--weights", tags)
    record = weights_record(weights)
    preset = getattr(enum, "DEFAULT", None)
    with seeded():
        model = models.get_model(spec.name, weights=None)
    if weights != RANDOM:
        path = weights
        if not os.path.isfile(weights):
            if weights not in tags and weights != "DEFAULT":
                _not_file_nor_tag(spec, weights, "--weights", tags)
            preset = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
            path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(preset.url))
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{spec.spec} --weights {weights}: not in the local torch hub cache ({path}) "
                    f"and zcore-fast never downloads weights; fetch {preset.url} where you have "
                    "access and pass the file: --weights /path/to/file.pth"
                )
            record.update(path=path, sha256=weights_record(path)["sha256"])
        state = _unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise ValueError(f"{path} does not fit {spec.spec}: {detail}") from None
    strip_classifier(model, spec.spec)
    if preset is None:
        transform = default_transform()
    else:
        transform = preset.transforms()
    return LoadedModel(spec=spec.spec, module=model, transform=transform, weights=record)


class _EncodeImage(torch.nn.Module):
    """Calls encode_image of an open_clip model whose image path is not just
    `visual` (e.g. CoCa)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)  # type: ignore[operator]


def _cached_open_clip_file(spec: ModelSpec, tag: str, cfg: dict[str, Any]) -> str:
    """The local file of an open_clip tag: in the Hugging Face cache (hf_hub)
    or open_clip's URL cache (~/.cache/clip). Never fetched."""
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        names = (
            [filename]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        cache = _hf_cache()
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # without huggingface_hub nothing can be in its cache
            names = []
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=cache)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        looked.append(f"{cache} ({repo})")
    url = cfg.get("url", "")
    if url:
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
        looked.append(path)
    where = f"hf download {hub.rstrip('/')}" if hub else url
    raise FileNotFoundError(
        f"{spec.spec} --pretrained {tag}: the weights are not in the local cache (looked in "
        f"{'; '.join(looked)}) and zcore-fast never downloads weights. Get the checkpoint "
        f"where you have access ({where}) and pass the file: --pretrained /path/to/checkpoint"
    )


def _supported(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` fitted to the installed open_clip: older releases call
    `pretrained_text` `pretrained_hf` and lack some options (an unknown keyword
    would reach the model's constructor and fail there)."""
    import inspect

    params = inspect.signature(fn).parameters
    out = {}
    for key, value in kwargs.items():
        if key == "pretrained_text" and key not in params:
            key = "pretrained_hf"
        if key in params:
            out[key] = value
    return out


def _hf_cache() -> str:
    # Read the environment now, not at import: huggingface_hub fixes it on import.
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return hub
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def _need_weights(spec: ModelSpec, flag: str, tags: list[str]) -> str:
    if spec.weights:
        return spec.weights
    hint = ""
    if tags:
        shown = ", ".join(tags[:4]) + (", ..." if len(tags) > 4 else "")
        hint = f", a tag ({shown}) whose file is already in the local cache"
    raise ValueError(
        f"{spec.spec} needs weights: {flag} PATH (a local checkpoint file){hint}, or {flag} "
        f"{RANDOM} for untrained weights"
    )


def _not_file_nor_tag(spec: ModelSpec, weights: str, flag: str, tags: list[str]) -> NoReturn:
    if weights.endswith(_FILE_SUFFIXES) or os.sep in weights:
        raise FileNotFoundError(f"{flag} {weights}: no such weights file; check the path")
    known = f"; its tags: {', '.join(tags)}" if tags else ""
    raise ValueError(
        f"{flag} {weights!r} is neither a file nor a known tag of {spec.spec}{known}; pass a "
        f"local checkpoint file or {RANDOM}"
    )


def _unwrap_state(state: Any) -> Any:
    """A state dict saved inside a training checkpoint ({'state_dict': ...} or {'model': ...})."""
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                return state[key]
    return state


def _close(name: str, known: list[str], lister: str) -> str:
    """What to do about an unknown name: the near ones, else where the names are."""
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else f"; {lister} lists the names"


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{module} is not installed: pip install {package} (or pip install 'zcore-fast[embed]')"
        ) from None
