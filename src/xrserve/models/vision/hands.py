"""`hands`: palm detection + 21 hand landmarks, up to two hands per image, batched across requests.

Runs MediaPipe's palm detector and hand landmark TFLite files under ai-edge-litert with
our own pre/post-processing (detector.py, roi.py), because that lets one call serve
frames of many sessions as one batch and keeps the tracking state out of the model:

- inputs: `image` (BYTES, a JPEG/PNG per row); optional `regions` (FP32 [n, 2, 4]: the
  tracked hand regions of the previous frame, size 0 = none) and `detect` (BOOL [n]: run
  the palm detector even though regions are given). Without regions the palm detector
  runs; with them only the landmark model does (tracking is cheaper than detection).
- outputs per row: `count`, `landmarks` (pixels x, y and relative depth z), `world_landmarks`
  (metres, origin near the hand's centre), `handedness` ("Left"/"Right", as MediaPipe: for
  a mirrored selfie image), `scores`, `regions` (where to look next frame), `image_size`.
- parameters: `max_hands` (1 or 2), `complexity` (1: full landmark model, default, as
  MediaPipe; 0: lite, about 2x faster), `tiles` (look again in square tiles of a tall or
  wide image when nothing is found at full view; default on, camera streams turn it off).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, StrictBool

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model, ModelParameters
from xrserve.models.vision import detector, results, roi
from xrserve.models.vision.tflite import TFLiteModel, mediapipe_file

MAX_HANDS = 2
LANDMARK_SIZE = 224
PRESENCE_THRESHOLD = 0.5
PALM_POINTS = [0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]  # the landmarks MediaPipe tracks the region by
HANDEDNESS = (b"Left", b"Right")
TRACK_IOU = 0.5  # a detected palm overlapping a tracked hand this much is the same hand


class HandsParameters(ModelParameters):
    max_hands: Literal[1, 2] = Field(2, description="the most hands to find in an image")
    complexity: Literal[0, 1] = Field(
        1, description="landmark model: 1 full (MediaPipe's default), 0 lite (about 2x faster, a little less precise)"
    )
    tiles: StrictBool = Field(
        True,
        description="when nothing is found in the whole image, look again in square "
        "tiles along the long side of a tall or wide image (camera streams turn it off)",
    )


class Hands(Model):
    Parameters = HandsParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="hands",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Hand landmarks (MediaPipe palm detection + hand landmark, full), up to 2 hands",
            inputs=[
                {"name": "image", "datatype": "BYTES", "shape": [-1], "content_type": "image"},
                {"name": "regions", "datatype": "FP32", "shape": [-1, MAX_HANDS, 4]},
                {"name": "detect", "datatype": "BOOL", "shape": [-1]},
            ],
            outputs=[
                {"name": "count", "datatype": "INT32", "shape": [-1]},
                {"name": "landmarks", "datatype": "FP32", "shape": [-1, MAX_HANDS, 21, 3]},
                {"name": "world_landmarks", "datatype": "FP32", "shape": [-1, MAX_HANDS, 21, 3]},
                {"name": "handedness", "datatype": "BYTES", "shape": [-1, MAX_HANDS]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, MAX_HANDS]},
                {"name": "regions", "datatype": "FP32", "shape": [-1, MAX_HANDS, 4]},
                {"name": "image_size", "datatype": "INT32", "shape": [-1, 2]},
            ],
            max_batch_size=8,
            max_queue_delay_ms=1,
            isolation="process",  # TFLite is native code: a crash takes only a worker (costs ~1 ms a call)
            instances=2,  # single-threaded interpreters: two workers use both cores (XNNPACK threads do not)
            queue_size=256,
            optional_inputs=["regions", "detect"],
            tracking={"limit_parameter": "max_hands"},
            frame_parameters={"tiles": False},  # a camera stream tracks; the tiled search is for single photos
            parameters={"max_hands": MAX_HANDS},
        )

    present = staticmethod(results.hands)

    def load(self) -> None:
        self.palm = TFLiteModel(mediapipe_file("palm_detection/palm_detection_full.tflite"), batchable=False)
        self.landmarks = {
            1: TFLiteModel(mediapipe_file("hand_landmark/hand_landmark_full.tflite")),
            0: TFLiteModel(mediapipe_file("hand_landmark/hand_landmark_lite.tflite")),
        }
        self.landmark = self.landmarks[1]
        self.anchors = detector.anchors(detector.PALM)
        blank = np.zeros((1, 96, 128, 3), np.uint8)
        for complexity in self.landmarks:  # warm up both
            self._run(
                [blank[0]],
                [np.array([[48, 64, 90, 0], [0, 0, 0, 0]], np.float32)],
                [False],
                MAX_HANDS,
                complexity=complexity,
            )

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        images = [decode_image(data) for data in images_of(inputs["image"])]
        rows = len(images)
        regions = inputs.get("regions", np.zeros((rows, MAX_HANDS, 4), np.float32)).astype(np.float32)
        detect = inputs.get("detect", np.ones(rows, bool)).astype(bool)
        # checked at admission against HandsParameters
        return self._run(
            images,
            list(regions),
            list(detect),
            int(parameters.get("max_hands", MAX_HANDS)),
            bool(parameters.get("tiles", True)),
            int(parameters.get("complexity", 1)),
        )

    # -- the two stages --------------------------------------------------------------------

    def _detect_palms(self, images: list[np.ndarray], max_hands: int, tiles: bool) -> list[list[np.ndarray]]:
        """Hand regions from the palm detector, for each image (batched).

        The detector sees the whole image at 192x192, where a hand at arm's length in a
        tall photo is a few pixels wide. With `tiles`, an image where nothing was found
        is looked at again as square tiles along its long side (one batch for all).
        """
        found = self._palms_in(images, [(0, 0)] * len(images), max_hands)
        if not tiles:
            return found
        retry = [
            (i, x, y, side)
            for i, image in enumerate(images)
            if not found[i]
            for x, y, side in _square_tiles(image.shape[1], image.shape[0])
        ]
        if retry:
            views = [images[i][y : y + side, x : x + side] for i, x, y, side in retry]
            for (i, _, _, _), regions in zip(retry, self._palms_in(views, [(x, y) for _, x, y, _ in retry], max_hands)):
                found[i] = _merge(found[i], regions, max_hands)
        return found

    def _palms_in(
        self, images: list[np.ndarray], offsets: list[tuple[int, int]], max_hands: int
    ) -> list[list[np.ndarray]]:
        size = detector.PALM.input_size
        boxes = [detector.letterbox(image, size) for image in images]
        raw_boxes, raw_scores = self.palm(np.stack([b[0] for b in boxes]))
        found = []
        for i, (_, scale, pad_x, pad_y) in enumerate(boxes):
            regions = []
            shift = np.array(offsets[i], np.float32)
            for detection in detector.decode(raw_boxes[i], raw_scores[i], self.anchors, detector.PALM)[:max_hands]:
                corners = detector.to_pixels(detection.box.reshape(2, 2), size, scale, pad_x, pad_y) + shift
                points = detector.to_pixels(detection.keypoints, size, scale, pad_x, pad_y) + shift
                (x0, y0), (x1, y1) = corners
                angle = roi.rotation_towards(points[0], points[2], 90.0)
                regions.append(
                    roi.region((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, angle, scale=2.6, shift_y=-0.5)
                )
            found.append(regions)
        return found

    def _run(
        self,
        images: list[np.ndarray],
        tracked: list[np.ndarray],
        detect: list[bool],
        max_hands: int,
        tiles: bool = True,
        complexity: int = 1,
    ) -> dict[str, np.ndarray]:
        rows = len(images)
        per_image = [[r for r in tracked[i] if r[2] > 0][:max_hands] for i in range(rows)]
        need = [i for i in range(rows) if detect[i] or not per_image[i]]
        if need:
            for i, palms in zip(need, self._detect_palms([images[i] for i in need], max_hands, tiles)):
                per_image[i] = _merge(per_image[i], palms, max_hands)
        jobs = [(i, region) for i in range(rows) for region in per_image[i]]
        out = _empty(rows)
        for i, image in enumerate(images):
            out["image_size"][i] = (image.shape[1], image.shape[0])
        if not jobs:
            return out
        crops = [roi.crop(images[i], region, LANDMARK_SIZE) for i, region in jobs]
        landmarks, presence, handedness, world = self.landmarks[complexity](np.stack([c[0] for c in crops]))
        for j, ((i, region), (_, inverse)) in enumerate(zip(jobs, crops)):
            if float(presence[j].ravel()[0]) < PRESENCE_THRESHOLD:
                continue
            slot = int(out["count"][i])
            points = roi.project(landmarks[j].reshape(21, 3), inverse, region, LANDMARK_SIZE)
            out["landmarks"][i, slot] = points
            out["world_landmarks"][i, slot] = roi.rotate_world(world[j].reshape(21, 3), float(region[3]))
            left = float(handedness[j].ravel()[0])
            out["handedness"][i, slot] = HANDEDNESS[0] if left >= 0.5 else HANDEDNESS[1]
            out["scores"][i, slot] = float(presence[j].ravel()[0])
            palm = points[PALM_POINTS]
            angle = roi.rotation_towards(points[0], (points[5] + points[13]) / 4 + points[9] / 2, 90.0)
            out["regions"][i, slot] = roi.region_around(palm, angle, scale=2.0, shift_y=-0.1)
            out["count"][i] = slot + 1
        return out


def _square_tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Overlapping squares (x, y, side) covering an image along its long side; none if it is squarish."""
    side, long = min(width, height), max(width, height)
    if long < 1.2 * side:
        return []
    count = int(np.ceil(long / side)) + 1  # overlap: a hand on a seam is whole in one tile
    starts = np.linspace(0, long - side, count).round().astype(int)
    return [(int(s), 0, side) if width > height else (0, int(s), side) for s in starts]


def _iou_regions(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two regions' axis-aligned squares: enough to tell a re-detected hand from a new one."""
    ha, hb = a[2] / 2, b[2] / 2
    w = min(a[0] + ha, b[0] + hb) - max(a[0] - ha, b[0] - hb)
    h = min(a[1] + ha, b[1] + hb) - max(a[1] - ha, b[1] - hb)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / (a[2] ** 2 + b[2] ** 2 - inter))


def _merge(tracked: list[np.ndarray], palms: list[np.ndarray], max_hands: int) -> list[np.ndarray]:
    """Tracked regions first (they are tighter); a detected palm joins only if it is a new hand."""
    merged = list(tracked)
    for palm in palms:
        if len(merged) >= max_hands:
            break
        if all(_iou_regions(palm, other) < TRACK_IOU for other in merged):
            merged.append(palm)
    return merged


def _empty(rows: int) -> dict[str, np.ndarray]:
    return {
        "count": np.zeros(rows, np.int32),
        "landmarks": np.zeros((rows, MAX_HANDS, 21, 3), np.float32),
        "world_landmarks": np.zeros((rows, MAX_HANDS, 21, 3), np.float32),
        "handedness": np.full((rows, MAX_HANDS), b"", dtype=object),
        "scores": np.zeros((rows, MAX_HANDS), np.float32),
        "regions": np.zeros((rows, MAX_HANDS, 4), np.float32),
        "image_size": np.zeros((rows, 2), np.int32),
    }
