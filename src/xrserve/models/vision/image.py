"""Images in, pixels out: the one place an uploaded JPEG/PNG becomes a numpy array.

The size is read from the header BEFORE anything is decoded (Pillow parses only the
header on `open`), so a 20000x20000 image announced in a 200-byte file is refused
without allocating 1.2 GB. Decoding itself is OpenCV's (`cv2.imdecode`), the fastest
JPEG path in the environment.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from xrserve.core.errors import BadRequest, PayloadTooLarge

MAX_SIDE = 4096  # pixels; a 4K camera frame fits, a decompression bomb does not
MAX_PIXELS = MAX_SIDE * MAX_SIDE
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


def image_size(data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) from the header alone; BadRequest/PayloadTooLarge if it cannot be served."""
    if len(data) == 0:
        raise BadRequest("the image is empty (0 bytes); send a JPEG or PNG file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit below says it better
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height, kind = image.width, image.height, image.format
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bad files
        why = "its bytes are not a known image format" if "cannot identify" in str(exc) else str(exc)
        raise BadRequest(f"the image ({len(data)} bytes) is not a readable JPEG or PNG: {why}") from None
    if kind not in FORMATS:
        raise BadRequest(f"image format {kind} is not supported; send one of {', '.join(FORMATS)}")
    if kind == "JPEG" and b"\xff\xd9" not in bytes(data[-32:]):
        raise BadRequest(f"the JPEG ({len(data)} bytes) is truncated: it has no end-of-image marker; "
                         "send the whole file")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise PayloadTooLarge(f"the image is {width}x{height} pixels; the limit is {MAX_SIDE}x{MAX_SIDE}. "
                              "Scale it down before sending (camera frames of 640x480 are plenty)")
    return width, height


def decode_image(data: bytes | memoryview) -> np.ndarray:
    """An RGB uint8 array (H, W, 3), after checking the header."""
    width, height = image_size(data)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape[:2] != (height, width):
        raise BadRequest(f"the image header says {width}x{height} but the pixel data cannot be decoded "
                         "(corrupt or truncated file)")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def images_of(inputs: dict[str, np.ndarray], name: str = "image") -> list[bytes]:
    """The raw image bytes of every row of a BYTES input."""
    return [item if isinstance(item, (bytes, bytearray)) else bytes(item) for item in inputs[name].ravel()]


def check_images(inputs: dict[str, np.ndarray]) -> None:
    """Admission check run in the server before a request is queued (header only, microseconds)."""
    for index, data in enumerate(images_of(inputs)):
        try:
            image_size(data)
        except (BadRequest, PayloadTooLarge) as exc:
            exc.message = f"image {index}: {exc.message}" if len(inputs["image"].ravel()) > 1 else exc.message
            raise
