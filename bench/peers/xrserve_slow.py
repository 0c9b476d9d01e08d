"""xrserve Python model for the 10 ms model; the bench copies it to `<repo>/slow/1/model.py`.

It reads the ONNX file beside it and the delay from `parameters.delay_ms` in model.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tinymodel import LinearModel

from xrserve import Model


class SlowLinear(Model):
    def load(self) -> None:
        directory = Path(self.config.directory or ".")
        self.model = LinearModel(directory / "model.onnx", self.config.parameters.get("delay_ms", 10) / 1000)

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"y": self.model(inputs["x"])}
