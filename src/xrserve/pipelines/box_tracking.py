"""Track ids for a detector's boxes on a camera stream: the same object keeps its id across frames.

An AR app anchors a label or an effect to "that cup", not to "box 3 of this frame". Greedy
IoU matching (the simplest tracker that holds for a camera at frame rate, where an object
moves a fraction of its size between frames): each new box takes the id of the unmatched
track of the same class it overlaps most, if that overlap is at least `MIN_IOU`; a box that
matches nothing starts a new id; a track unseen for `MAX_MISSES` answered frames is dropped
(so a box that flickers out for a frame or two keeps its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_IOU = 0.3
MAX_MISSES = 10


@dataclass
class _Track:
    id: int
    cls: int
    box: np.ndarray
    misses: int = 0


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) with every box in b (m, 4), corners x1, y1, x2, y2."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class BoxTracker:
    """One per camera stream and detector model; `assign` adds `track` to each box dict in place."""

    def __init__(self) -> None:
        self.tracks: list[_Track] = []
        self.next_id = 1

    def assign(self, boxes: list[dict[str, Any]]) -> None:
        found = np.array([b["box"] for b in boxes], np.float32).reshape(-1, 4)
        overlap = iou(found, np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4))
        for track_index, track in enumerate(self.tracks):  # other classes never match
            for box_index, box in enumerate(boxes):
                if box["class"] != track.cls:
                    overlap[box_index, track_index] = 0.0
        matched: set[int] = set()
        taken: set[int] = set()
        for flat in np.argsort(-overlap, axis=None):  # best overlaps first
            box_index, track_index = np.unravel_index(flat, overlap.shape)
            if overlap[box_index, track_index] < MIN_IOU:
                break
            if box_index in matched or track_index in taken:
                continue
            matched.add(int(box_index))
            taken.add(int(track_index))
            track = self.tracks[track_index]
            track.box, track.misses = found[box_index], 0
            boxes[box_index]["track"] = track.id
        for track_index, track in enumerate(self.tracks):
            if track_index not in taken:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= MAX_MISSES]
        for box_index, box in enumerate(boxes):
            if box_index not in matched:
                self.tracks.append(_Track(self.next_id, box["class"], found[box_index]))
                box["track"] = self.next_id
                self.next_id += 1
