"""Single-shot detectors of MediaPipe (palm, face): anchors, box decoding, weighted NMS.

Re-implements MediaPipe's SsdAnchorsCalculator / TensorsToDetectionsCalculator in numpy,
so the TFLite files can run batched under our own runtime (see docs/perception.md for
why not the mediapipe graphs). Everything works on the model's square input; the
letterbox is undone by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SsdOptions:
    input_size: int
    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    keypoints: int
    score_threshold: float = 0.5
    nms_threshold: float = 0.3


PALM = SsdOptions(input_size=192, strides=(8, 16, 16, 16), min_scale=0.1484375, max_scale=0.75, keypoints=7)
FACE = SsdOptions(input_size=128, strides=(8, 16, 16, 16), min_scale=0.1484375, max_scale=0.75, keypoints=6)


def anchors(options: SsdOptions) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1]; fixed anchor size, two anchors per layer and cell."""
    centres = []
    layer = 0
    strides = options.strides
    while layer < len(strides):
        same = 0
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        cells = int(np.ceil(options.input_size / strides[layer]))
        per_cell = 2 * same
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detection:
    score: float
    box: np.ndarray  # xmin, ymin, xmax, ymax in [0, 1] of the model input
    keypoints: np.ndarray  # (K, 2) in [0, 1] of the model input


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_centres: np.ndarray, options: SsdOptions
) -> list[Detection]:
    """One image's raw outputs (N, 4 + 2K), (N, 1) into detections after weighted NMS."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[:, 0].astype(np.float64), -100, 100)))
    keep = np.nonzero(scores >= options.score_threshold)[0]
    if keep.size == 0:
        return []
    size = float(options.input_size)
    raw = raw_boxes[keep]
    centre = anchor_centres[keep]
    cx = raw[:, 0] / size + centre[:, 0]
    cy = raw[:, 1] / size + centre[:, 1]
    w = raw[:, 2] / size
    h = raw[:, 3] / size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    points = raw[:, 4 : 4 + 2 * options.keypoints].reshape(-1, options.keypoints, 2) / size + centre[:, None, :]
    return _weighted_nms(scores[keep], boxes, points, options.nms_threshold)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(scores: np.ndarray, boxes: np.ndarray, points: np.ndarray, threshold: float) -> list[Detection]:
    """MediaPipe's WEIGHTED suppression: overlapping boxes are averaged by score, not dropped."""
    order = np.argsort(-scores)
    remaining = order
    found: list[Detection] = []
    while remaining.size:
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining])
        group = remaining[overlap > threshold]
        weights = scores[group][:, None]
        total = weights.sum()
        box = (boxes[group] * weights).sum(axis=0) / total
        keypoints = (points[group] * weights[:, :, None]).sum(axis=0) / total
        found.append(Detection(float(scores[best]), box, keypoints))
        remaining = remaining[overlap <= threshold]
    return found


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit an RGB image into a size x size float tensor in [0, 1], padding the short side.

    Returns the tensor and (scale, pad_x, pad_y) to map model coordinates back:
    pixel = (model_unit * size - pad) / scale.
    """
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    tensor = np.zeros((size, size, 3), np.float32)
    tensor[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized.astype(np.float32) / 255.0
    return tensor, scale, float(pad_x), float(pad_y)


def to_pixels(points: np.ndarray, size: int, scale: float, pad_x: float, pad_y: float) -> np.ndarray:
    """Model-unit coordinates (..., 2) back to image pixels."""
    out = np.empty_like(points, dtype=np.float32)
    out[..., 0] = (points[..., 0] * size - pad_x) / scale
    out[..., 1] = (points[..., 1] * size - pad_y) / scale
    return out
