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


def hands(out: Outputs, row: int = 0) -> dict[str, Any]:
    count = int(out["count"][row])
    return {"image_size": out["image_size"][row], "hands": [
        {"handedness": _text(out["handedness"][row, k]), "score": round(float(out["scores"][row, k]), 4),
         "landmarks": out["landmarks"][row, k], "world_landmarks": out["world_landmarks"][row, k]}
        for k in range(count)]}


def pose(out: Outputs, row: int = 0) -> dict[str, Any]:
    found = int(out["count"][row]) > 0
    people = [{"landmarks": out["landmarks"][row], "world_landmarks": out["world_landmarks"][row]}] if found else []
    return {"image_size": out["image_size"][row], "poses": people,
            "landmark_fields": ["x", "y", "z", "visibility"]}


def face(out: Outputs, row: int = 0) -> dict[str, Any]:
    found = int(out["count"][row]) > 0
    faces = [{"score": round(float(out["scores"][row]), 4), "landmarks": out["landmarks"][row]}] if found else []
    return {"image_size": out["image_size"][row], "faces": faces}


def segmentation(out: Outputs, row: int = 0) -> dict[str, Any]:
    return {"image_size": out["image_size"][row], "coverage": round(float(out["coverage"][row]), 4),
            "mask_png_base64": base64.b64encode(out["mask_png"][row]).decode("ascii")}


def markers(out: Outputs, row: int = 0) -> dict[str, Any]:
    return {"intrinsics_assumed": bool(out["intrinsics_assumed"][0]), "frame": "opencv (x right, y down, z forward)",
            "markers": [{"id": int(out["ids"][i]), "corners": out["corners"][i],
                         "translation_m": out["translation"][i], "rotation_xyzw": out["rotation"][i]}
                        for i in range(len(out["ids"]))]}


def ocr(out: Outputs, row: int = 0) -> dict[str, Any]:
    return {"lines": [{"text": _text(out["text"][i]), "box": out["boxes"][i], "score": round(float(out["scores"][i]), 4)}
                      for i in range(len(out["text"]))]}
