"""The one internal request type every transport produces, and its answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrserve.core.config import Priority

#: Request parameters that steer the server rather than the model; they never reach
#: `Model.infer` and do not stop two requests from sharing a batch.
CONTROL_PARAMETERS = frozenset({"deadline_ms", "priority", "binary_data_output", "session"})


@dataclass(slots=True, eq=False)
class InferenceRequest:
    """What to compute, for whom, and until when it is worth computing.

    `deadline` is on the `time.monotonic()` clock: after it the answer is useless
    (the frame has been drawn) and the scheduler answers `DeadlineExceeded` instead
    of computing. `frame_key` marks a camera frame (e.g. session/stream/model): with
    the default frame policy a newer request with the same key supersedes an older
    one still waiting (latest-frame-wins), and frames of different sessions share
    the model fairly.
    """

    model: str
    inputs: dict[str, np.ndarray]
    version: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    deadline: float | None = None
    priority: Priority | None = None
    session: str | None = None
    id: str = ""
    arrival: float = field(default_factory=time.monotonic)
    frame_key: str | None = None

    def model_parameters(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if k not in CONTROL_PARAMETERS}


@dataclass(slots=True)
class InferenceResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    id: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0
