"""The Model base class: the whole API a model author writes against.

A model declares its inputs and outputs (from `model.toml` or its own class
attribute `config`), loads once, and answers a batch. The scheduler has already
checked names, datatypes and shapes, and concatenated compatible requests along
the batch dimension, so `infer` only computes.
"""

from __future__ import annotations

from typing import Any, Callable

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


Emit = Callable[[dict[str, Any]], None]


class StreamingModel(Model):
    """A model whose answer streams (LLM tokens, speech audio) and which schedules its own work.

    The scheduler admits at most `config.parameters["max_streams"]` (default 8) streams per
    instance at once and orders the waiting ones; the model interleaves the admitted ones
    itself (an LLM decodes them in one batch). `start_stream` returns at once; `emit` may be
    called from any thread with chunks `{"kind": "started" | "delta" | "done" | "error", ...}`,
    and the last chunk of a stream is "done" or "error" (with "status" and "message").
    """

    def start_stream(self, stream_id: int, inputs: dict[str, np.ndarray], parameters: dict[str, Any],
                     emit: Emit) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement start_stream")

    def cancel_stream(self, stream_id: int) -> None:
        """Stop a stream now and free what it holds; it should still emit a final "done"."""

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError("streaming models answer through start_stream")
