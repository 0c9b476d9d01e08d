"""`markers`: ArUco / AprilTag detection with OpenCV and each marker's 6-DoF pose.

The pose needs the camera's intrinsics (`fx`, `fy`, `cx`, `cy` in pixels, request
parameters) and the printed marker's side (`marker_length_m`). It is solved with
IPPE for squares (exact for planar squares, no iteration) and returned in OpenCV's
camera frame: x right, y down, z forward, metres; rotation as a unit quaternion
(x, y, z, w) taking marker coordinates to camera coordinates. Without intrinsics a
pinhole camera with focal length = image width (about 53 degrees across) is assumed,
and the answer says so.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from pydantic import Field, StrictFloat, StrictStr, field_validator, model_validator

from xrserve.core.config import ModelConfig
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model, ModelParameters
from xrserve.models.vision import results

DICTIONARIES = {
    name.removeprefix("DICT_").lower(): getattr(cv2.aruco, name) for name in dir(cv2.aruco) if name.startswith("DICT_")
}
DEFAULT_DICTIONARY = "4x4_50"


def _pixels(what: str) -> Any:
    return Field(
        None,
        gt=0,
        lt=1e6,
        description=f"{what}, in pixels (give all of fx, fy, cx, cy, or none: "
        "then a focal length of the image width and the centre are assumed)",
    )


class MarkersParameters(ModelParameters):
    fx: StrictFloat | None = _pixels("focal length along x")
    fy: StrictFloat | None = _pixels("focal length along y")
    cx: StrictFloat | None = _pixels("principal point x")
    cy: StrictFloat | None = _pixels("principal point y")
    marker_length_m: StrictFloat = Field(
        0.05,
        gt=0,
        lt=1e6,
        description="side of the printed marker's black square, in metres: the scale of the translation",
    )
    dictionary: StrictStr = Field(
        DEFAULT_DICTIONARY,
        json_schema_extra={"enum": [*sorted(DICTIONARIES)]},
        description="the marker family, e.g. 4x4_50 (ArUco) or apriltag_36h11; case and a DICT_ prefix do not matter",
    )

    @field_validator("dictionary")
    @classmethod
    def _known_dictionary(cls, value: str) -> str:
        key = value.lower().removeprefix("dict_")
        if key not in DICTIONARIES:
            raise ValueError(f"unknown marker dictionary; use one of {', '.join(sorted(DICTIONARIES))}")
        return key

    @model_validator(mode="after")
    def _all_intrinsics_or_none(self) -> MarkersParameters:
        given = [k for k in ("fx", "fy", "cx", "cy") if getattr(self, k) is not None]
        if given and len(given) != 4:
            raise ValueError(f"camera intrinsics need all of fx, fy, cx, cy (pixels); got only {given}")
        return self


class Markers(Model):
    Parameters = MarkersParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="markers",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="ArUco/AprilTag markers with 6-DoF pose (OpenCV); parameters fx, fy, cx, cy, "
            "marker_length_m, dictionary",
            inputs=[{"name": "image", "datatype": "BYTES", "shape": [1], "content_type": "image"}],
            outputs=[
                {"name": "ids", "datatype": "INT32", "shape": [-1]},
                {"name": "corners", "datatype": "FP32", "shape": [-1, 4, 2]},
                {"name": "translation", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "rotation", "datatype": "FP32", "shape": [-1, 4]},
                {"name": "intrinsics_assumed", "datatype": "BOOL", "shape": [1]},
            ],
            isolation="thread",  # OpenCV's detector is robust and fast; a process hop would dominate
            parameters={"dictionaries": sorted(DICTIONARIES)},
        )

    present = staticmethod(results.markers)

    def load(self) -> None:
        self._detectors: dict[str, cv2.aruco.ArucoDetector] = {}

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        image = decode_image(images_of(inputs["image"])[0])
        height, width = image.shape[:2]
        camera, assumed = camera_matrix(parameters, width, height)
        length = float(parameters.get("marker_length_m", 0.05))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        corners, ids, _ = self._detector(str(parameters.get("dictionary", DEFAULT_DICTIONARY))).detectMarkers(gray)
        ids = np.zeros(0, np.int32) if ids is None else np.asarray(ids).ravel()
        count = len(ids)
        out = {
            "ids": np.zeros(count, np.int32),
            "corners": np.zeros((count, 4, 2), np.float32),
            "translation": np.zeros((count, 3), np.float32),
            "rotation": np.zeros((count, 4), np.float32),
            "intrinsics_assumed": np.array([assumed]),
        }
        half = length / 2
        square = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]], np.float32)
        for i in range(count):
            points = corners[i].reshape(4, 2).astype(np.float32)
            ok, rvec, tvec = cv2.solvePnP(square, points, camera, None, flags=cv2.SOLVEPNP_IPPE_SQUARE)
            out["ids"][i] = int(ids[i])
            out["corners"][i] = points
            if ok:
                out["translation"][i] = tvec.ravel()
                out["rotation"][i] = quaternion(cv2.Rodrigues(rvec)[0])
        return out

    def _detector(self, name: str) -> cv2.aruco.ArucoDetector:
        key = name.lower().removeprefix("dict_")  # checked at admission against MarkersParameters
        if key not in self._detectors:
            dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARIES[key])
            parameters = cv2.aruco.DetectorParameters()
            parameters.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX  # sub-pixel corners: better pose
            self._detectors[key] = cv2.aruco.ArucoDetector(dictionary, parameters)
        return self._detectors[key]


def camera_matrix(parameters: dict[str, Any], width: int, height: int) -> tuple[np.ndarray, bool]:
    """The pinhole matrix from fx, fy, cx, cy (all present, checked by MarkersParameters), or an assumed one."""
    if all(parameters.get(k) is not None for k in ("fx", "fy", "cx", "cy")):
        fx, fy, cx, cy = (float(parameters[k]) for k in ("fx", "fy", "cx", "cy"))
        assumed = False
    else:
        fx = fy = float(width)
        cx, cy, assumed = width / 2, height / 2, True
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64), assumed


def quaternion(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrix to unit quaternion (x, y, z, w), w >= 0."""
    m = matrix
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2 * math.sqrt(trace + 1)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2 * math.sqrt(1 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2 * math.sqrt(1 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2 * math.sqrt(1 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    quaternion = np.array(q, np.float32)
    quaternion /= np.linalg.norm(quaternion)
    return quaternion if quaternion[3] >= 0 else -quaternion
