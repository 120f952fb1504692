"""Fingerprints that tell whether a resumed run uses the same weights and preprocessing."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_CHUNK = 1 << 22
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def state_sha256(module: Any) -> str:
    """sha256 of a torch module's parameters and buffers (names, dtypes, shapes,
    bytes), in state_dict order: equal for equal weights however they were loaded."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        if not hasattr(tensor, "detach"):  # extra state that is not a tensor
            continue
        if torch.nn.parameter.is_lazy(tensor):  # shaped only by the first forward pass
            digest.update(f"{name}|lazy\n".encode())
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def describe(transform: Any) -> str:
    """repr() of a transform without object addresses, which change between
    runs and would make an identical transform look different on resume."""
    return _ADDRESS.sub("", repr(transform))
