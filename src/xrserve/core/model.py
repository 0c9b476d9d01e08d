"""The Model base class: the whole API a model author writes against.

A model declares its inputs and outputs (from `model.toml` or its own class
attribute `config`), loads once, and answers a batch. The scheduler has already
checked names, datatypes and shapes, and concatenated compatible requests along
the batch dimension, so `infer` only computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.config import ModelConfig


class Model:
    """Subclass this, implement `load` and `infer`.

    ```python
    class Doubler(Model):
        def infer(self, inputs, parameters):
            return {"y": inputs["x"] * 2}
    ```
    """

    #: Built-in models set a default config here; user models get theirs from model.toml.
    config: ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def load(self) -> None:
        """Read weights and warm up. Runs once, in the process that will serve."""

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        """Compute one batch: a dict of input arrays in, a dict of output arrays out."""
        raise NotImplementedError(f"{type(self).__name__} must implement infer(inputs, parameters)")
