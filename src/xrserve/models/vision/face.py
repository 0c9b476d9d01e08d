"""`face`: face detection (short range) + the 468-point face mesh, batched, with tracking regions.

Same design as `hands`: MediaPipe's TFLite files under ai-edge-litert with our own
pre/post-processing; the camera stream passes last frame's region back in `regions`
so a tracked face costs only the mesh model. (`face_landmark_with_attention` needs a
custom op litert lacks; the plain mesh is used.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model
from xrserve.models.parameters import NoParameters
from xrserve.models.vision import detector, results, roi
from xrserve.models.vision.tflite import TFLiteModel, mediapipe_file

MESH_POINTS = 468
MESH_SIZE = 192
PRESENCE_THRESHOLD = 0.5
RIGHT_EYE, LEFT_EYE = 33, 263


class Face(Model):
    Parameters = NoParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="face",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Face mesh: 468 landmarks of the most prominent face (MediaPipe face detection + mesh)",
            inputs=[
                {"name": "image", "datatype": "BYTES", "shape": [-1], "content_type": "image"},
                {"name": "regions", "datatype": "FP32", "shape": [-1, 1, 4]},
                {"name": "detect", "datatype": "BOOL", "shape": [-1]},
            ],
            outputs=[
                {"name": "count", "datatype": "INT32", "shape": [-1]},
                {"name": "landmarks", "datatype": "FP32", "shape": [-1, MESH_POINTS, 3]},
                {"name": "scores", "datatype": "FP32", "shape": [-1]},
                {"name": "regions", "datatype": "FP32", "shape": [-1, 1, 4]},
                {"name": "image_size", "datatype": "INT32", "shape": [-1, 2]},
            ],
            max_batch_size=8,
            max_queue_delay_ms=1,
            isolation="process",
            optional_inputs=["regions", "detect"],
            tracking={},
        )

    present = staticmethod(results.face)

    def load(self) -> None:
        self.detector = TFLiteModel(mediapipe_file("face_detection/face_detection_short_range.tflite"), batchable=False)
        self.mesh = TFLiteModel(mediapipe_file("face_landmark/face_landmark.tflite"))
        self.anchors = detector.anchors(detector.FACE)
        self.infer({"image": np.array([_blank_png()], dtype=object)}, {})  # warm up

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        images = [decode_image(data) for data in images_of(inputs["image"])]
        rows = len(images)
        tracked = inputs.get("regions", np.zeros((rows, 1, 4), np.float32))[:, 0].astype(np.float32)
        detect = inputs.get("detect", np.ones(rows, bool)).astype(bool)
        regions: list[np.ndarray | None] = [r if r[2] > 0 else None for r in tracked]
        for i in range(rows):
            if detect[i] or regions[i] is None:
                found = self._detect(images[i])
                regions[i] = found if found is not None else regions[i]
        out = {
            "count": np.zeros(rows, np.int32),
            "landmarks": np.zeros((rows, MESH_POINTS, 3), np.float32),
            "scores": np.zeros(rows, np.float32),
            "regions": np.zeros((rows, 1, 4), np.float32),
            "image_size": np.array([(im.shape[1], im.shape[0]) for im in images], np.int32).reshape(rows, 2),
        }
        located = {i: region for i, region in enumerate(regions) if region is not None}
        jobs = list(located)
        if not jobs:
            return out
        crops = [roi.crop(images[i], located[i], MESH_SIZE) for i in jobs]
        raw_points, raw_flags = self.mesh(np.stack([c[0] for c in crops]))
        for j, i in enumerate(jobs):
            score = float(1 / (1 + np.exp(-raw_flags[j].ravel()[0])))
            if score < PRESENCE_THRESHOLD:
                continue
            points = roi.project(raw_points[j].reshape(MESH_POINTS, 3), crops[j][1], located[i], MESH_SIZE)
            out["count"][i], out["scores"][i], out["landmarks"][i] = 1, score, points
            angle = roi.rotation_towards(points[RIGHT_EYE], points[LEFT_EYE], 0.0)
            out["regions"][i, 0] = roi.region_around(points, angle, scale=1.5, shift_y=0.0)
        return out

    def _detect(self, image: np.ndarray) -> np.ndarray | None:
        size = detector.FACE.input_size
        tensor, scale, pad_x, pad_y = detector.letterbox(image, size)
        raw_boxes, raw_scores = self.detector(tensor[None] * 2.0 - 1.0)  # this detector expects [-1, 1]
        found = detector.decode(raw_boxes[0], raw_scores[0], self.anchors, detector.FACE)
        if not found:
            return None
        best = max(found, key=lambda d: (d.box[2] - d.box[0]) * d.score)  # the nearest, most certain face
        (x0, y0), (x1, y1) = detector.to_pixels(best.box.reshape(2, 2), size, scale, pad_x, pad_y)
        eyes = detector.to_pixels(best.keypoints[:2], size, scale, pad_x, pad_y)
        angle = roi.rotation_towards(eyes[0], eyes[1], 0.0)
        return roi.region((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, angle, scale=1.5, shift_y=0.0)


def _blank_png() -> bytes:
    import cv2

    return cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
