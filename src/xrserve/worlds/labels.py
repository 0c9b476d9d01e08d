"""Text in 3D: a string rasterised into a PNG texture on a quad (signs, placeholder names, captions).

glTF has no text primitive, and a headset cannot be relied on to have fonts, so the
text travels as an image. Pillow's built-in FreeType font (`load_default(size=...)`,
Pillow >= 10.1) renders it, so nothing depends on the fonts a machine happens to have
installed, and the same text always gives the same bytes (the GLB is deterministic).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xrserve.worlds.mesh import Mesh

MAX_CHARS = 200  # longer text is cut (with "...") rather than refused: prompts are user input
MAX_WIDTH_PX = 1024
FONT_PX = 64
PADDING_PX = 20
LINE_GAP_PX = 10


@functools.cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=FONT_PX)


def _to_srgb8(rgba: Sequence[float]) -> tuple[int, int, int, int]:
    """Linear RGBA 0..1 (the layer's colour convention) to the 8-bit sRGB a PNG texture holds; alpha is linear."""
    values = [min(max(float(c), 0.0), 1.0) for c in rgba]
    if len(values) == 3:
        values.append(1.0)
    if len(values) != 4:
        raise ValueError(f"expected RGB or RGBA, got {rgba!r}")
    rgb = [12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055 for c in values[:3]]
    r, g, b, a = (round(c * 255) for c in (*rgb, values[3]))
    return (r, g, b, a)


def _text_width(text: str) -> float:
    return float(_font().getlength(text))


def _wrap(text: str, max_px: float) -> list[str]:
    """Greedy word wrap to `max_px`; a word longer than a line is broken between characters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while _text_width(word) > max_px:  # break an over-long word
                cut = 1
                while cut < len(word) and _text_width(word[: cut + 1]) <= max_px:
                    cut += 1
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if _text_width(candidate) <= max_px:
                line = candidate
            else:
                lines.append(line)
                line = word
        if line:
            lines.append(line)
    return lines or [text.strip()]


def normalize(text: str) -> str:
    """Runs of blanks made one space, blank lines dropped, ends stripped; cut to MAX_CHARS with "..."."""
    text = "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 3].rstrip() + "..."
    return text


def label_image(
    text: str, color: Sequence[float] = (1, 1, 1, 1), background: Sequence[float] = (0.1, 0.1, 0.1, 0.85)
) -> Image.Image:
    """The label's RGBA image: text centred on a background, wrapped to at most 1024 px wide."""
    text = normalize(text)
    if not text:
        raise ValueError("label text is empty")
    font = _font()
    lines = _wrap(text, MAX_WIDTH_PX - 2 * PADDING_PX)
    ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (FONT_PX, 0)
    line_h = ascent + descent
    width = min(MAX_WIDTH_PX, int(np.ceil(max(_text_width(line) for line in lines))) + 2 * PADDING_PX)
    height = len(lines) * line_h + (len(lines) - 1) * LINE_GAP_PX + 2 * PADDING_PX
    image = Image.new("RGBA", (width, height), _to_srgb8(background))
    draw = ImageDraw.Draw(image)
    ink = _to_srgb8(color)
    for i, line in enumerate(lines):
        x = (width - _text_width(line)) / 2
        y = PADDING_PX + i * (line_h + LINE_GAP_PX)
        draw.text((x, y), line, font=font, fill=ink)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes with fixed options and no metadata chunks (no time, no text): equal images give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def label_mesh(
    text: str,
    height_m: float = 0.3,
    color: Sequence[float] = (1, 1, 1, 1),
    background: Sequence[float] = (0.1, 0.1, 0.1, 0.85),
) -> Mesh:
    """A double-sided quad `height_m` tall, centred at the origin in the XY plane and facing +Z, showing `text`.

    The width follows the image's aspect ratio. `color` and `background` are linear RGBA
    like every colour in this layer (converted to sRGB in the PNG, as glTF expects of a
    base-colour texture). UVs use glTF's origin: v = 0 is the top of the image.
    """
    if not height_m > 0:
        raise ValueError(f"height_m must be positive, got {height_m}")
    image = label_image(text, color, background)
    width_m = height_m * image.width / image.height
    w, h = width_m / 2, height_m / 2
    positions = np.array([[-w, -h, 0.0], [w, -h, 0.0], [w, h, 0.0], [-w, h, 0.0]])
    uvs = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    return Mesh(
        positions,
        np.array([[0, 1, 2], [0, 2, 3]]),
        normals=np.tile([0.0, 0.0, 1.0], (4, 1)),
        colors=np.ones((4, 4)),
        uvs=uvs,
        texture_png=png_bytes(image),
        double_sided=True,
        extras={"label": normalize(text)},
    )
