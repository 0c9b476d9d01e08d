"""`InferenceClient`: the one way pipelines, session streams and transports reach models.

The embedded `Scheduler` implements it; a distributed backend (Ray Serve) is a second
implementation, so the same pipeline code runs in one process or across a cluster.
Everything that makes XR work travels inside the request (`InferenceRequest`): the
priority class, the deadline, the frame key for latest-frame-wins, the session.

Cancellation is the caller's: cancel the task awaiting `submit` (or call `cancel()` on
a `Stream`) and the work is dropped — a queued request never runs, a running stream
stops at its next step. A client that goes away therefore costs nothing more.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from xrserve.core.capabilities import Capabilities
from xrserve.core.config import ModelConfig
from xrserve.core.request import InferenceRequest, InferenceResponse
from xrserve.core.stream import Stream


@runtime_checkable
class ModelInfo(Protocol):
    """One version of one model as a client sees it."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    config: ModelConfig
    capabilities: Capabilities


class InferenceClient(Protocol):
    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        """The whole answer (a streaming model's text is collected). Cancel the awaiting task to drop it."""
        ...

    async def stream(self, request: InferenceRequest) -> Stream:
        """An open stream of a streaming model (LLM tokens); iterate it, `cancel()` it to stop the model."""
        ...

    def resolve(self, name: str, version: str | None = None, affinity: str | None = None) -> ModelInfo:
        """The version a request without one means (404 naming the models here if unknown).

        With an `affinity` (a session's id), the version that session's requests get while a canary runs.
        """
        ...

    def model_names(self) -> list[str]:
        """The names of the models loaded here."""
        ...
