"""The Model base class: the whole API a model author writes against.

A model declares its inputs and outputs (from `model.toml` or its own class
attribute `config`), loads once, and answers a batch. The scheduler has already
checked names, datatypes, shapes and parameters, decoded declared image inputs, and
concatenated compatible requests along the batch dimension, so `infer` only computes.

Built-in models (classes inside the xrserve package, trusted to be imported into the
server) may also declare, as class attributes, what the server does for them before
and after the model runs: `Parameters` (validated at admission), `check_inputs` (a
cheap check at admission) and `present` (how one row of the answer reads as JSON).
A user's `model.py` is never imported into the server: its code runs only where a
crash cannot reach the server, so these hooks are read from built-in classes only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from xrserve.core.codec import outputs_as_json
from xrserve.core.config import ModelConfig

Outputs = dict[str, np.ndarray]


def tensors_as_json(outputs: Outputs, row: int = 0) -> dict[str, Any]:
    """The default presentation: the output tensors, as the Open Inference Protocol writes them."""
    return {"outputs": outputs_as_json(outputs)}


#: One row of a model's answer as JSON-ready values (numpy arrays are fine: orjson writes them).
Presenter = Callable[[Outputs, int], dict[str, Any]]
InputCheck = Callable[[dict[str, np.ndarray]], None]


class ModelParameters(BaseModel):
    """Base of a model's request parameters: unknown names are refused, so a typo is a 400, not a default."""

    model_config = ConfigDict(extra="forbid")


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
    #: The request parameters this model reads (a `ModelParameters` subclass), checked before queuing.
    Parameters: ClassVar[type[ModelParameters] | None] = None

    @staticmethod
    def check_inputs(inputs: dict[str, np.ndarray]) -> None:
        """A cheap check of the inputs run in the server at admission: raise `BadRequest` before queuing."""

    @staticmethod
    def present(outputs: Outputs, row: int) -> dict[str, Any]:
        """One row of the outputs as the JSON `/v1/vision` and camera streams send; default: the tensors."""
        return tensors_as_json(outputs, row)

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

    The scheduler admits at most `config.max_streams` streams per instance at once and orders
    the waiting ones; the model interleaves the admitted ones itself (an LLM decodes them in
    one batch). `start_stream` returns at once; `emit` may be called from any thread with
    chunks `{"kind": "started" | "delta" | "done" | "error", ...}`, and the last chunk of a
    stream is "done" or "error" (with "status" and "message"). A "done" chunk may report
    usage: `prompt_tokens`, `completion_tokens`.
    """

    def start_stream(
        self, stream_id: int, inputs: dict[str, np.ndarray], parameters: dict[str, Any], emit: Emit
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement start_stream")

    def cancel_stream(self, stream_id: int) -> None:
        """Stop a stream now and free what it holds; it should still emit a final "done"."""

    def hold(self, seconds: float) -> None:
        """Pause computing for up to `seconds` (0: go on now); see `ModelConfig.yields_to_speech`."""

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError("streaming models answer through start_stream")
