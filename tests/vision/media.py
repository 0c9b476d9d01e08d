"""Test images: the photos in tests/data, and markers, text and broken files rendered here with OpenCV."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import TEST_DATA

HAND_IMAGES = TEST_DATA / "hand_images"
COCO = TEST_DATA / "images" / "coco"
FACE = TEST_DATA / "images" / "face_sergey.png"
PEOPLE = {"000000000315.jpg", "000000000431.jpg", "000000000446.jpg"}  # COCO photos with a person (looked at)

INTRINSICS = {"fx": 800.0, "fy": 800.0, "cx": 320.0, "cy": 240.0}
MARKER_M = 0.05


def hand_photos() -> list[Path]:
    return sorted(p for gesture in ("call", "four", "rock") for p in (HAND_IMAGES / gesture).glob("*.jpg"))


def rotation(x_deg: float, y_deg: float) -> np.ndarray:
    """A marker facing the camera (turned 180 degrees about x), then tilted about y and x."""

    def rx(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    return rx(math.pi) @ ry(math.radians(y_deg)) @ rx(math.radians(x_deg))


def render_marker(marker_id: int, rot: np.ndarray, translation: np.ndarray) -> bytes:
    """A 640x480 PNG of an ArUco 4x4 marker (side MARKER_M) seen at the given pose."""
    side = 400
    marker = cv2.aruco.generateImageMarker(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50), marker_id, side)
    half = MARKER_M / 2
    corners = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    camera = (rot @ corners.T).T + translation
    k = INTRINSICS
    pixels = np.stack(
        [k["fx"] * camera[:, 0] / camera[:, 2] + k["cx"], k["fy"] * camera[:, 1] / camera[:, 2] + k["cy"]], axis=1
    ).astype(np.float32)
    source = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
    warp = cv2.getPerspectiveTransform(source, pixels)
    canvas = cv2.warpPerspective(marker, warp, (640, 480), flags=cv2.INTER_AREA, borderValue=255)
    return cv2.imencode(".png", canvas)[1].tobytes()


def render_text(text: str) -> bytes:
    image = np.full((120, 900, 3), 255, np.uint8)
    cv2.putText(image, text, (20, 75), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3, cv2.LINE_AA)
    return cv2.imencode(".png", image)[1].tobytes()


def huge_png_header(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header announcing a giant image, with almost no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def corrupt_jpeg() -> bytes:
    """A real photo whose header bytes were overwritten: not decodable."""
    data = bytearray((HAND_IMAGES / "call").glob("*.jpg").__next__().read_bytes())
    data[2:400] = bytes(range(256)) + bytes(142)
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = next((HAND_IMAGES / "call").glob("*.jpg")).read_bytes()
    return data[: len(data) // 2]


def quaternion_angle_deg(q1: np.ndarray, q2: np.ndarray) -> float:
    dot = abs(float(np.dot(q1 / np.linalg.norm(q1), q2 / np.linalg.norm(q2))))
    return math.degrees(2 * math.acos(min(1.0, dot)))
