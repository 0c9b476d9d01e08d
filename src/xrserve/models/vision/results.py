"""Model outputs (one row) as the JSON that `/v1/vision` and the camera stream send.

One function per model, so the REST answer and the session's `result` message are
the same shape. Coordinates stay in image pixels (with `image_size` alongside);
arrays stay numpy, serialised by orjson without a Python-list detour.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

Outputs = dict[str, np.ndarray]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def hands(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    count = int(outputs["count"][row])
    return {
        "image_size": outputs["image_size"][row],
        "hands": [
            {
                "handedness": _text(outputs["handedness"][row, k]),
                "score": round(float(outputs["scores"][row, k]), 4),
                "landmarks": outputs["landmarks"][row, k],
                "world_landmarks": outputs["world_landmarks"][row, k],
            }
            for k in range(count)
        ],
    }


def pose(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    found = int(outputs["count"][row]) > 0
    people = (
        [{"landmarks": outputs["landmarks"][row], "world_landmarks": outputs["world_landmarks"][row]}] if found else []
    )
    return {"image_size": outputs["image_size"][row], "poses": people, "landmark_fields": ["x", "y", "z", "visibility"]}


def face(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    found = int(outputs["count"][row]) > 0
    faces = (
        [{"score": round(float(outputs["scores"][row]), 4), "landmarks": outputs["landmarks"][row]}] if found else []
    )
    return {"image_size": outputs["image_size"][row], "faces": faces}


def segmentation(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    return {
        "image_size": outputs["image_size"][row],
        "coverage": round(float(outputs["coverage"][row]), 4),
        "mask_png_base64": base64.b64encode(outputs["mask_png"][row]).decode("ascii"),
    }


def markers(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    return {
        "intrinsics_assumed": bool(outputs["intrinsics_assumed"][0]),
        "frame": "opencv (x right, y down, z forward)",
        "markers": [
            {
                "id": int(outputs["ids"][i]),
                "corners": outputs["corners"][i],
                "translation_m": outputs["translation"][i],
                "rotation_xyzw": outputs["rotation"][i],
            }
            for i in range(len(outputs["ids"]))
        ],
    }


def ocr(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    return {
        "lines": [
            {
                "text": _text(outputs["text"][i]),
                "box": outputs["boxes"][i],
                "score": round(float(outputs["scores"][i]), 4),
            }
            for i in range(len(outputs["text"]))
        ]
    }


#: face-emotion's labels, in the order of its `probabilities` (fer's order)
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def face_emotion(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    faces = []
    for k in range(int(outputs["count"][row])):
        probabilities = outputs["probabilities"][row, k]
        faces.append(
            {
                "box": [round(float(v), 1) for v in outputs["boxes"][row, k]],
                "score": round(float(outputs["scores"][row, k]), 4),
                "emotion": _text(outputs["emotions"][row, k]),
                "scores": {label: round(float(p), 4) for label, p in zip(EMOTIONS, probabilities)},
            }
        )
    return {"image_size": outputs["image_size"][row], "faces": faces}
