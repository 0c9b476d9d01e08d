"""Image inputs: the one place an uploaded JPEG/PNG is checked and becomes pixels.

Any model may declare an input with `content_type = "image"` (built-in or a user's):
clients send the encoded file, the scheduler checks its header at admission (a 400 or
413 before anything is queued), and a runner decodes it to the pixels the model
declared, in the process that computes, so a slow or malicious file never costs the
server's event loop a decode.

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

from xrserve.core.config import ModelConfig
from xrserve.core.errors import BadRequest, PayloadTooLarge

MAX_SIDE = 4096  # pixels; a 4K camera frame fits, a decompression bomb does not
MAX_PIXELS = MAX_SIDE * MAX_SIDE
FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


def image_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
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
        raise BadRequest(
            f"the JPEG ({len(data)} bytes) is truncated: it has no end-of-image marker; send the whole file"
        )
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise PayloadTooLarge(
            f"the image is {width}x{height} pixels; the limit is {MAX_SIDE}x{MAX_SIDE}. "
            "Scale it down before sending (camera frames of 640x480 are plenty)"
        )
    return width, height


def decode_image(data: bytes | bytearray | memoryview) -> np.ndarray:
    """An RGB uint8 array (H, W, 3), after checking the header."""
    width, height = image_size(data)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape[:2] != (height, width):
        raise BadRequest(
            f"the image header says {width}x{height} but the pixel data cannot be decoded (corrupt or truncated file)"
        )
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def images_of(array: np.ndarray) -> list[bytes]:
    """The raw image bytes of every element of a BYTES tensor."""
    return [item if isinstance(item, bytes) else bytes(item) for item in array.ravel()]


def check_images(config: ModelConfig, inputs: dict[str, np.ndarray]) -> None:
    """Admission: every declared image input's header is readable and within limits (microseconds)."""
    for name in config.image_inputs:
        if name not in inputs:
            continue
        files = images_of(inputs[name])
        for index, data in enumerate(files):
            try:
                image_size(data)
            except (BadRequest, PayloadTooLarge) as exc:
                exc.message = f"input '{name}' image {index}: {exc.message}" if len(files) > 1 else exc.message
                raise


def decode_inputs(config: ModelConfig, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Image inputs declared as pixels (UINT8 or FP32) decoded to the declared layout; others as sent."""
    wanted = [t for t in config.inputs if t.content_type == "image" and t.datatype != "BYTES" and t.name in inputs]
    if not wanted:
        return inputs
    decoded = dict(inputs)
    for tensor in wanted:
        batched = len(tensor.shape) == 4
        channels_first = batched and tensor.shape[1] == 3 and tensor.shape[-1] != 3
        height, width = (tensor.shape[-2], tensor.shape[-1]) if channels_first else (tensor.shape[-3], tensor.shape[-2])
        rows = []
        for data in images_of(inputs[tensor.name]):
            pixels = decode_image(data)
            if height > 0 and width > 0 and pixels.shape[:2] != (height, width):
                pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
            rows.append(pixels)
        if len({r.shape for r in rows}) > 1:
            raise BadRequest(
                f"input '{tensor.name}': the images of one request differ in size "
                f"({sorted({r.shape[:2] for r in rows})}); send images of one size, or declare a "
                "fixed height and width in model.toml so they are resized"
            )
        pixels = np.stack(rows)
        if channels_first:
            pixels = pixels.transpose(0, 3, 1, 2)
        if tensor.datatype == "FP32":
            pixels = pixels.astype(np.float32) / 255.0
        decoded[tensor.name] = np.ascontiguousarray(pixels if batched else pixels[0])
    return decoded
