"""Rotated square regions of interest: where a landmark model looks in the next frame.

A region is (cx, cy, size, angle) in image pixels; angle in radians, positive turns
the crop's "up" clockwise on screen. Landmark models see the region warped to their
square input; `crop` returns the warp, `project` maps model points back to pixels.
These are the per-stream tracking state the camera pipeline keeps (see pipelines/ar.py).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Region = np.ndarray  # float32 [4]: cx, cy, size, angle


def normalize_angle(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def rotation_towards(start: np.ndarray, end: np.ndarray, target_deg: float) -> float:
    """Angle that turns the vector start->end to point at `target_deg` (90 = up), as MediaPipe does."""
    return normalize_angle(math.radians(target_deg) - math.atan2(-(end[1] - start[1]), end[0] - start[0]))


def region(cx: float, cy: float, width: float, height: float, angle: float, *, scale: float, shift_y: float) -> Region:
    """A box grown to a square (long side), enlarged by `scale` and shifted along its own up axis."""
    cx += -height * shift_y * math.sin(angle)
    cy += height * shift_y * math.cos(angle)
    size = max(width, height) * scale
    return np.array([cx, cy, size, angle], np.float32)


def _corners(roi: Region) -> np.ndarray:
    cx, cy, size, angle = (float(v) for v in roi)
    half = size / 2
    cos, sin = math.cos(angle), math.sin(angle)
    local = np.array([[-half, -half], [half, -half], [-half, half]], np.float32)
    rotated = np.stack([local[:, 0] * cos - local[:, 1] * sin, local[:, 0] * sin + local[:, 1] * cos], axis=1)
    return (rotated + np.array([cx, cy], np.float32)).astype(np.float32)


def crop(image: np.ndarray, roi: Region, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The region warped to size x size float32 in [0, 1], and the inverse affine (model px -> image px)."""
    target = np.array([[0, 0], [size, 0], [0, size]], np.float32)
    forward = cv2.getAffineTransform(_corners(roi), target)
    patch = cv2.warpAffine(image, forward, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return patch.astype(np.float32) / 255.0, cv2.invertAffineTransform(forward)


def project(points: np.ndarray, inverse: np.ndarray, roi: Region, model_size: int) -> np.ndarray:
    """Model-input landmarks (K, 3) to image pixels; z scaled like x (pixels, relative depth)."""
    out = np.empty_like(points, dtype=np.float32)
    xy = points[:, :2]
    out[:, :2] = xy @ inverse[:, :2].T + inverse[:, 2]
    out[:, 2] = points[:, 2] * float(roi[2]) / model_size
    return out


def rotate_world(points: np.ndarray, angle: float) -> np.ndarray:
    """World landmarks are predicted in the crop's frame: turn them back by the region's angle."""
    cos, sin = math.cos(angle), math.sin(angle)
    out = points.copy()
    out[:, 0] = points[:, 0] * cos - points[:, 1] * sin
    out[:, 1] = points[:, 0] * sin + points[:, 1] * cos
    return out


def region_around(points: np.ndarray, angle: float, *, scale: float, shift_y: float) -> Region:
    """The tracking region for the next frame: landmarks' box in the rotated frame, grown and shifted."""
    cos, sin = math.cos(-angle), math.sin(-angle)
    centre = points[:, :2].mean(axis=0)
    local = points[:, :2] - centre
    rotated = np.stack([local[:, 0] * cos - local[:, 1] * sin, local[:, 0] * sin + local[:, 1] * cos], axis=1)
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    middle = (low + high) / 2
    cos_b, sin_b = math.cos(angle), math.sin(angle)
    cx = centre[0] + middle[0] * cos_b - middle[1] * sin_b
    cy = centre[1] + middle[0] * sin_b + middle[1] * cos_b
    width, height = high - low
    return region(float(cx), float(cy), float(width), float(height), angle, scale=scale, shift_y=shift_y)
