"""Embedding images with PyTorch models into the .npy files zcore-fast reads.

>>> from zcore_fast.embedding import embed
>>> embed("images/", "emb.npy", "open_clip:ViT-L-14", weights="ViT-L-14.bin")  # doctest: +SKIP

Nothing here imports torch until `embed` runs, so `import zcore_fast` stays
light. Install the models' packages with `pip install 'zcore-fast[embed]'`.
"""

from zcore_fast.embedding.run import DTYPES, EmbedResult, embed
from zcore_fast.embedding.sources import IMAGE_EXTENSIONS, ImageList, find_images
from zcore_fast.embedding.specs import ACCEPTED_FORMS, ModelSpec, parse_spec

__all__ = [
    "ACCEPTED_FORMS",
    "DTYPES",
    "IMAGE_EXTENSIONS",
    "EmbedResult",
    "ImageList",
    "ModelSpec",
    "embed",
    "find_images",
    "parse_spec",
]
