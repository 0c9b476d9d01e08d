"""What crosses the hop between the xrserve front and a Serve replica, and back.

A deadline on the front's `time.monotonic()` clock means nothing on another machine, so it
travels as the time left when the request was sent, plus the sender's wall clock: the replica
takes off what the hop itself took (clamped, because two nodes' clocks may disagree by a few
milliseconds) and sets the deadline on its own clock. Priority, frame key, session and affinity
travel as they are. Errors come back as (status, message, headers), never as pickled exception
objects, so a replica's answer is the same `XRServeError` with the same status at the front.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from xrserve.core.errors import XRServeError, error_for
from xrserve.core.request import InferenceRequest, InferenceResponse

MAX_HOP_CREDIT_S = 1.0  # at most this much hop time is taken off a deadline (clock skew guard)


@dataclass(slots=True)
class WireRequest:
    request: InferenceRequest  # with deadline None: see `budget_s`
    budget_s: float | None  # seconds left until the deadline when it was sent
    sent_wall: float  # the sender's time.time() at sending

    @classmethod
    def of(cls, request: InferenceRequest) -> WireRequest:
        now = time.monotonic()
        budget = None if request.deadline is None else request.deadline - now
        return cls(dataclasses.replace(request, deadline=None), budget, time.time())

    def local(self) -> tuple[InferenceRequest, float]:
        """The request on this process's clock (arrival now, the deadline what is left of the budget), and the hop."""
        now = time.monotonic()
        hop = min(max(time.time() - self.sent_wall, 0.0), MAX_HOP_CREDIT_S)
        deadline = None if self.budget_s is None else now + self.budget_s - hop
        return dataclasses.replace(self.request, arrival=now, deadline=deadline), hop


#: a replica's answer: ("ok", response) or ("error", status, message, headers)
Answer = tuple[Any, ...]


def error_answer(exc: XRServeError) -> Answer:
    return ("error", exc.status_code, exc.message, dict(exc.headers))


def error_chunk(exc: XRServeError) -> dict[str, Any]:
    """A stream's terminal error chunk, as the models' own streams write it."""
    return {"kind": "error", "status": exc.status_code, "message": exc.message}


def unpack(answer: Answer) -> InferenceResponse:
    if answer[0] == "ok":
        response: InferenceResponse = answer[1]
        return response
    _, status, message, headers = answer
    raise error_for(int(status), str(message), headers)
