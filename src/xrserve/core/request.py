"""The one internal request type every transport produces, its answer, and the priority classes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

#: Request parameters that steer the server rather than the model; they never reach
#: `Model.infer` and do not stop two requests from sharing a batch.
CONTROL_PARAMETERS = frozenset({"deadline_ms", "timeout", "priority", "binary_data_output", "session"})


class Priority(IntEnum):
    """Ordered classes of work, most urgent first; the gaps leave room for classes added later.

    Within a class, the earliest deadline goes first. Everything before BULK is interactive:
    while any of it waits, bulk batches yield (see the scheduler).
    """

    FRAME = 10  # a camera frame: worthless once the next one is drawn
    FIRST_SPEECH = 20  # the first spoken piece of a character's answer: what the user waits for
    INTERACTIVE = 30  # a person is waiting (REST calls, the rest of an answer)
    BULK = 40  # generation, training, batch jobs

    @property
    def interactive(self) -> bool:
        return self < Priority.BULK


@dataclass(slots=True, eq=False)
class InferenceRequest:
    """What to compute, for whom, and until when it is worth computing.

    `deadline` is on the `time.monotonic()` clock: after it the answer is useless
    (the frame has been drawn) and the scheduler answers `DeadlineExceeded` instead
    of computing. `frame_key` marks a camera frame (e.g. session/stream/model): with
    the default frame policy a newer request with the same key supersedes an older
    one still waiting (latest-frame-wins), and frames of different sessions share
    the model fairly. `session` identifies the client (an XR session or an API key):
    fairness between sessions.
    `priority` None means the model's own default class. `affinity` keeps requests on one
    version while a canary splits a model's traffic (core/canary.py): an XR session's streams
    set it to the session's id, an OIP client may send `parameters.session`; `session` alone
    (an API key for REST clients) does not, so one key's requests are still split.
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
    affinity: str | None = None

    def model_parameters(self) -> dict[str, Any]:
        return {k: v for k, v in self.parameters.items() if k not in CONTROL_PARAMETERS}


@dataclass(slots=True)
class Usage:
    """What a request cost, reported back for quotas: tokens in and out, and compute time."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    compute_s: float = 0.0


@dataclass(slots=True)
class InferenceResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    id: str = ""
    queue_s: float = 0.0
    compute_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
