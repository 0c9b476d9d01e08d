"""Tensor datatypes and shapes as the Open Inference Protocol names them.

The wire names (FP32, BYTES, ...) live here and nowhere else, so the rest of the
code speaks numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from xrserve.core.errors import BadRequest

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
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

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def check(self, array: np.ndarray, datatype: str, what: str = "input") -> None:
        """Raise a 400 that names the tensor if `array` does not fit this spec."""
        if datatype != self.datatype:
            raise BadRequest(
                f"{what} '{self.name}': datatype {datatype} does not match the model, "
                f"which expects {self.datatype}"
            )
        if len(array.shape) != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, array.shape)
        ):
            raise BadRequest(
                f"{what} '{self.name}': shape {list(array.shape)} does not match the model, "
                f"which expects {list(self.shape)} (-1 means any size)"
            )
