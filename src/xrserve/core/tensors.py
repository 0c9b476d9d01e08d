"""Tensor datatypes and shapes as the Open Inference Protocol names them.

The wire names (FP32, BYTES, ...) live here and nowhere else, so the rest of the
code speaks numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xrserve.core.errors import BadRequest

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
DATATYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype name for a numpy array (strings and bytes are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    for name, dtype in NUMPY_DTYPES.items():
        if dtype == array.dtype:
            return name
    raise BadRequest(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


@dataclass(frozen=True)
class TensorSpec:
    """One declared input or output: name, datatype and shape (-1 = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    content_type: str | None = None  # "image": sent as encoded image bytes (BYTES), whatever the model receives

    def metadata(self) -> dict[str, Any]:
        wire = self.wire()
        found: dict[str, Any] = {"name": wire.name, "datatype": wire.datatype, "shape": list(wire.shape)}
        if self.content_type:
            found["parameters"] = {"content_type": self.content_type}
        return found

    def wire(self) -> TensorSpec:
        """The tensor as clients send it: an image input is one encoded image (BYTES) per row."""
        if self.content_type != "image" or self.datatype == "BYTES":
            return self
        return TensorSpec(self.name, "BYTES", (-1,) if len(self.shape) == 4 else (1,), self.content_type)

    def check(self, array: np.ndarray, datatype: str, what: str = "input") -> None:
        """Raise a 400 that names the tensor if `array` does not fit this spec (as clients send it)."""
        if self.content_type == "image" and self.datatype != "BYTES":
            return self.wire().check(array, datatype, what)
        if datatype != self.datatype:
            raise BadRequest(
                f"{what} '{self.name}': datatype {datatype} does not match the model, which expects {self.datatype}"
            )
        if len(array.shape) != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, array.shape)
        ):
            raise BadRequest(
                f"{what} '{self.name}': shape {list(array.shape)} does not match the model, "
                f"which expects {list(self.shape)} (-1 means any size)"
            )
