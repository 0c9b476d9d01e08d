"""`runtime = "yolo"`: an Ultralytics YOLO detector exported to ONNX, served as its own `predict` serves it.

Most AR teams train their detector with Ultralytics and export it with `format="onnx"`.
This runtime takes that file as it is and reproduces Ultralytics' pre- and post-processing
for an ONNX model (not for a `.pt`, whose letterbox pads to a multiple of the stride):
the image is letterboxed to the model's square input (resized with bilinear interpolation,
centred, padded with grey 114), RGB scaled to 0..1; the output is read in either layout
Ultralytics exports:

- `[batch, 4 + classes, anchors]` (YOLOv8 / YOLO11 `export(format="onnx")`): centre boxes and
  class scores, filtered by `conf` and reduced by class-aware greedy NMS at `iou`, at most
  `max_det` kept (Ultralytics' `non_max_suppression`);
- `[batch, detections, 6]` (end-to-end: YOLOv10, YOLO26, or any export with `nms=True`):
  corner boxes, score, class, already without NMS; filtered by `conf`, at most `max_det`.

Boxes come back in pixels of the original image (`[x1, y1, x2, y2]`, clipped to it) with the
class index, its name (Ultralytics' `names` metadata, or `names = [...]` under `[parameters]`
in model.toml) and the score. Camera streams give every box a track id (`track_boxes`).
"""

from __future__ import annotations

import ast
from typing import Any

import cv2
import numpy as np
from pydantic import Field, StrictFloat, StrictInt

from xrserve.core.config import TensorDecl
from xrserve.core.images import decode_image, images_of
from xrserve.core.model import Model, ModelParameters

PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_NMS = 30_000  # boxes that enter NMS at most (Ultralytics' max_nms), by score
CLASS_OFFSET = 7680.0  # Ultralytics' max_wh: boxes of different classes never overlap in NMS
OUTPUTS = [
    TensorDecl(name="count", datatype="INT32", shape=[-1]),
    TensorDecl(name="boxes", datatype="FP32", shape=[-1, -1, 4]),
    TensorDecl(name="scores", datatype="FP32", shape=[-1, -1]),
    TensorDecl(name="classes", datatype="INT32", shape=[-1, -1]),
    TensorDecl(name="names", datatype="BYTES", shape=[-1, -1]),
    TensorDecl(name="image_size", datatype="INT32", shape=[-1, 2]),
]


class YoloParameters(ModelParameters):
    """Named as Ultralytics names them; the defaults are Ultralytics' `predict` defaults."""

    conf: StrictFloat = Field(0.25, ge=0.0, le=1.0, description="minimum score of a box")
    iou: StrictFloat = Field(0.7, ge=0.0, le=1.0, description="NMS: a box overlapping a better one more is dropped")
    max_det: StrictInt = Field(300, ge=1, le=1000, description="boxes per image at most")


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """RGB (H, W, 3) uint8 into the model's (h, w) as Ultralytics' LetterBox(auto=False) does.

    Returns the padded image, the (x, y) gains of the resized sides (each side is rounded, so
    they differ slightly) and the (left, top) padding: what `scale_boxes` undoes.
    """
    height, width = image.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new_w, new_h = max(round(width * scale), 1), max(round(height * scale), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    if (width, height) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, (new_w / width, new_h / height), (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (torchvision.ops.nms): indices by descending score, dropping boxes with IoU > iou."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / (areas[best] + areas[rest] - inter + 1e-12)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)


def select(raw: np.ndarray, conf: float, iou: float, max_det: int, end_to_end: bool) -> np.ndarray:
    """One image's raw output as (n, 6) rows of x1, y1, x2, y2, score, class in model pixels."""
    if end_to_end:  # (detections, 6): already boxes after NMS
        return raw[raw[:, 4] > conf][:max_det].astype(np.float32)
    candidates = raw.T  # (anchors, 4 + classes)
    class_scores = candidates[:, 4:]
    best = class_scores.argmax(1)
    score = class_scores[np.arange(len(best)), best]
    keep = score > conf
    centre, score, best = candidates[keep, :4], score[keep], best[keep]
    if len(score) > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        centre, score, best = centre[top], score[top], best[top]
    corners = np.concatenate([centre[:, :2] - centre[:, 2:] / 2, centre[:, :2] + centre[:, 2:] / 2], axis=1)
    chosen = nms(corners + best[:, None] * CLASS_OFFSET, score, iou)[:max_det]
    return np.concatenate([corners[chosen], score[chosen, None], best[chosen, None]], axis=1).astype(np.float32)


def to_image(rows: np.ndarray, gain: tuple[float, float], pad: tuple[int, int], width: int, height: int) -> np.ndarray:
    """Model-pixel boxes back to the original image (Ultralytics' scale_boxes + clip_boxes)."""
    boxes = rows[:, :4].copy()
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad[0]) / gain[0]).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad[1]) / gain[1]).clip(0, height)
    return boxes


def names_from_metadata(metadata: dict[str, str]) -> list[str] | None:
    """Ultralytics writes `names` as a Python dict literal ({0: 'person', ...}) into the ONNX metadata."""
    text = metadata.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return [str(names[i]) for i in sorted(names)]
    return [str(n) for n in names] if isinstance(names, list) else None


class YoloDetector(Model):
    Parameters = YoloParameters

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        path = self.config.weights_path()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for a bad file
            raise ValueError(f"{path.name if path else 'model.onnx'} is not a loadable ONNX file: {exc}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            found = [(t.name, t.shape) for t in inputs]
            raise ValueError(f"not a YOLO detector: it should take one image tensor [batch, 3, h, w], it takes {found}")
        self.input_name = inputs[0].name
        _, channels, height, width = inputs[0].shape
        if channels != 3 or not isinstance(height, int) or not isinstance(width, int):
            raise ValueError(
                f"not a YOLO detector export this runtime takes: input {inputs[0].shape}; export with a fixed "
                "image size (Ultralytics `export(format='onnx', imgsz=640)`; dynamic=True is not supported)"
            )
        self.size = (height, width)
        metadata = self.session.get_modelmeta().custom_metadata_map
        names = self.config.parameters.get("names") or names_from_metadata(metadata)
        shape = outputs[0].shape
        if len(outputs) != 1 or len(shape) != 3:
            raise ValueError(
                f"not a YOLO detector: expected one output [batch, 4 + classes, anchors] or [batch, detections, 6], "
                f"got {[(t.name, t.shape) for t in outputs]} (segmentation and pose exports are not detectors)"
            )
        self.end_to_end = shape[2] == 6  # else [batch, 4 + classes, anchors]: thousands of anchors, never 6
        classes = None if self.end_to_end else (shape[1] - 4 if isinstance(shape[1], int) else None)
        if not self.end_to_end and (classes is None or classes < 1):
            raise ValueError(f"not a YOLO detector: output {shape} has no class scores after the 4 box values")
        if names is None:
            raise ValueError(
                "no class names: the ONNX file has no Ultralytics `names` metadata; "
                'add `names = ["...", ...]` under [parameters] in model.toml'
            )
        if classes is not None and len(names) != classes:
            raise ValueError(f"{len(names)} class names for a model with {classes} classes")
        self.names = [str(n) for n in names]
        self.config.inputs = [TensorDecl(name="image", datatype="BYTES", shape=[-1], content_type="image")]
        self.config.outputs = list(OUTPUTS)
        self.config.track_boxes = True
        self.batchable = inputs[0].shape[0] != 1  # a dynamic batch dimension runs a batch in one call

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        conf = float(parameters.get("conf", 0.25))
        iou = float(parameters.get("iou", 0.7))
        max_det = int(parameters.get("max_det", 300))
        images = [decode_image(data) for data in images_of(inputs["image"])]
        boxed = [letterbox(image, self.size) for image in images]
        tensor = np.stack([b[0] for b in boxed]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        if self.batchable:
            raw = self.session.run(None, {self.input_name: tensor})[0]
        else:
            raw = np.concatenate([self.session.run(None, {self.input_name: t[None]})[0] for t in tensor])
        found = []
        for row, (image, (_, gain, pad)) in enumerate(zip(images, boxed)):
            rows = select(raw[row], conf, iou, max_det, self.end_to_end)
            found.append((to_image(rows, gain, pad, image.shape[1], image.shape[0]), rows[:, 4], rows[:, 5]))
        most = max((len(scores) for _, scores, _ in found), default=0)
        out = {
            "count": np.array([len(scores) for _, scores, _ in found], np.int32),
            "boxes": np.zeros((len(images), most, 4), np.float32),
            "scores": np.zeros((len(images), most), np.float32),
            "classes": np.full((len(images), most), -1, np.int32),
            "names": np.full((len(images), most), b"", dtype=object),
            "image_size": np.array([(im.shape[1], im.shape[0]) for im in images], np.int32).reshape(-1, 2),
        }
        for row, (boxes, scores, classes) in enumerate(found):
            n = len(scores)
            out["boxes"][row, :n], out["scores"][row, :n] = boxes, scores
            out["classes"][row, :n] = classes.astype(np.int32)
            for k, index in enumerate(classes.astype(int)):
                out["names"][row, k] = self._name(index).encode()
        return out

    def _name(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else str(index)

    @staticmethod
    def present(outputs: dict[str, np.ndarray], row: int = 0) -> dict[str, Any]:
        """`/v1/vision` and camera `result`s: boxes as [x1, y1, x2, y2] pixels with class, name and score."""
        count = int(outputs["count"][row])
        return {
            "image_size": outputs["image_size"][row],
            "boxes": [
                {
                    "box": [round(float(v), 2) for v in outputs["boxes"][row, k]],
                    "class": int(outputs["classes"][row, k]),
                    "name": _text(outputs["names"][row, k]),
                    "score": round(float(outputs["scores"][row, k]), 5),
                }
                for k in range(count)
            ],
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
