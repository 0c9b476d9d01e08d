"""`segmentation`: person mask (MediaPipe selfie segmentation, general model) as a PNG per image.

The mask goes out as an 8-bit PNG at the image's own size: compact on the wire (a
640x480 mask is a few kB), and images of different sizes still share one batch.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model
from xrserve.models.parameters import NoParameters
from xrserve.models.vision import results
from xrserve.models.vision.tflite import TFLiteModel, mediapipe_file

SIZE = 256


class Segmentation(Model):
    Parameters = NoParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="segmentation",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Person segmentation mask (MediaPipe selfie segmentation), PNG at the image's size",
            inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1], "content_type": "image"}],
            outputs=[
                {"name": "mask_png", "datatype": "BYTES", "shape": [-1]},
                {"name": "coverage", "datatype": "FP32", "shape": [-1]},
                {"name": "image_size", "datatype": "INT32", "shape": [-1, 2]},
            ],
            max_batch_size=8,
            max_queue_delay_ms=1,
            isolation="process",
        )

    present = staticmethod(results.segmentation)

    def load(self) -> None:
        self.model = TFLiteModel(mediapipe_file("selfie_segmentation/selfie_segmentation.tflite"))
        self.model(np.zeros((1, SIZE, SIZE, 3), np.float32))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        images = [decode_image(data) for data in images_of(inputs["image"])]
        batch = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in images])
        (masks,) = self.model(batch.astype(np.float32) / 255.0)
        pngs, coverage = [], []
        for image, mask in zip(images, masks):
            full = cv2.resize(mask[..., 0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            pngs.append(cv2.imencode(".png", (np.clip(full, 0, 1) * 255).astype(np.uint8))[1].tobytes())
            coverage.append(float((full > 0.5).mean()))
        return {
            "mask_png": np.array(pngs, dtype=object),
            "coverage": np.array(coverage, np.float32),
            "image_size": np.array([(im.shape[1], im.shape[0]) for im in images], np.int32),
        }
