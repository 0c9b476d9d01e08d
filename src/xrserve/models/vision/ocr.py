"""`ocr`: text lines and their boxes with RapidOCR (PaddleOCR models on ONNX Runtime).

About 300 ms per 640x480 image on this machine: an on-demand model (a snapshot, a
sign the user points at), not a per-frame one. ONNX Runtime is native code, so it
runs in a worker process.
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


class OCR(Model):
    Parameters = NoParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="ocr",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Text lines with boxes (RapidOCR, ONNX Runtime)",
            inputs=[{"name": "image", "datatype": "BYTES", "shape": [1], "content_type": "image"}],
            outputs=[
                {"name": "text", "datatype": "BYTES", "shape": [-1]},
                {"name": "boxes", "datatype": "FP32", "shape": [-1, 4, 2]},
                {"name": "scores", "datatype": "FP32", "shape": [-1]},
            ],
            isolation="process",
            priority="bulk",  # never delays a camera frame
            camera=False,  # ~300 ms an image: on demand (POST /v1/vision/ocr), never per frame
            queue_size=32,
        )

    present = staticmethod(results.ocr)

    def load(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()
        self.engine(np.full((64, 200, 3), 255, np.uint8))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        image = cv2.cvtColor(decode_image(images_of(inputs["image"])[0]), cv2.COLOR_RGB2BGR)
        result, _ = self.engine(image)
        lines = result or []
        return {
            "text": np.array([line[1].encode("utf-8") for line in lines], dtype=object),
            "boxes": np.array([line[0] for line in lines], np.float32).reshape(-1, 4, 2),
            "scores": np.array([float(line[2]) for line in lines], np.float32),
        }
