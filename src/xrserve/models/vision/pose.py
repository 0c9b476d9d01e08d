"""`pose`: 33 body landmarks (image and world coordinates) with MediaPipe's Pose solution.

Pose runs the mediapipe graph itself (model_complexity=1, the only one bundled) rather
than our own TFLite pipeline: its detector-to-region step (hip centre, body circle) is
intricate and pose is not on the per-frame hot path the way hands are. The graph is
stateless here (static image mode): each image is detected afresh, so requests of
different sessions can share a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model
from xrserve.models.parameters import NoParameters
from xrserve.models.vision import results

POINTS = 33


class Pose(Model):
    Parameters = NoParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="pose",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Body pose: 33 landmarks of one person (MediaPipe Pose, full model)",
            inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1], "content_type": "image"}],
            outputs=[
                {"name": "count", "datatype": "INT32", "shape": [-1]},
                {"name": "landmarks", "datatype": "FP32", "shape": [-1, POINTS, 4]},
                {"name": "world_landmarks", "datatype": "FP32", "shape": [-1, POINTS, 3]},
                {"name": "image_size", "datatype": "INT32", "shape": [-1, 2]},
            ],
            max_batch_size=4,
            max_queue_delay_ms=1,
            isolation="process",
        )

    present = staticmethod(results.pose)

    def load(self) -> None:
        import mediapipe as mp

        self.graph = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=False, min_detection_confidence=0.5
        )
        self.graph.process(np.zeros((64, 64, 3), np.uint8))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        images = [decode_image(data) for data in images_of(inputs["image"])]
        rows = len(images)
        out = {
            "count": np.zeros(rows, np.int32),
            "landmarks": np.zeros((rows, POINTS, 4), np.float32),
            "world_landmarks": np.zeros((rows, POINTS, 3), np.float32),
            "image_size": np.array([(im.shape[1], im.shape[0]) for im in images], np.int32).reshape(rows, 2),
        }
        for i, image in enumerate(images):
            result = self.graph.process(image)
            if result.pose_landmarks is None:
                continue
            height, width = image.shape[:2]
            out["count"][i] = 1
            out["landmarks"][i] = [
                (p.x * width, p.y * height, p.z * width, p.visibility) for p in result.pose_landmarks.landmark
            ]
            out["world_landmarks"][i] = [(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark]
        return out
