"""Perception models for AR: hands, face, face-emotion, pose, segmentation, markers, OCR (one module each).

Images are checked and decoded by `xrserve.core.images` (their input declares
`content_type = "image"`), `tflite` runs MediaPipe's TFLite files under ai-edge-litert,
`detector` and `roi` are the detector and region maths shared by hands and face, `results`
turns outputs into the JSON the REST and session APIs send.
"""

from __future__ import annotations

from xrserve.core.config import ModelConfig


def vision_configs() -> list[ModelConfig]:
    from xrserve.models.vision.face import Face
    from xrserve.models.vision.face_emotion import FaceEmotion
    from xrserve.models.vision.hands import Hands
    from xrserve.models.vision.markers import Markers
    from xrserve.models.vision.ocr import OCR
    from xrserve.models.vision.pose import Pose
    from xrserve.models.vision.segmentation import Segmentation

    return [cls.default_config() for cls in (Hands, Pose, Face, FaceEmotion, Segmentation, Markers, OCR)]
