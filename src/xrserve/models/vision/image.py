"""The perception models' view of their image input: the encoded files of a batch, decoded here.

Checking and decoding live in `xrserve.core.images` (any model with an image input gets
them); the built-in vision models take the encoded bytes (datatype BYTES) and decode in
their own worker, where they also need the original size for pixel coordinates.
"""

from __future__ import annotations

import numpy as np

from xrserve.core.images import decode_image, image_size
from xrserve.core.images import images_of as _images_of

__all__ = ["decode_image", "image_size", "images_of"]


def images_of(inputs: dict[str, np.ndarray], name: str = "image") -> list[bytes]:
    """The raw image bytes of every row of a BYTES input."""
    return _images_of(inputs[name])
