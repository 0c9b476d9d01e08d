"""Scheduling controls a client may attach to any request: deadline and priority.

Deadline: request parameter `deadline_ms` (relative, from arrival), Triton's
`timeout` parameter (microseconds), or the `X-Deadline-Ms` header. Priority:
`interactive` or `bulk`, or a Triton integer (1 = interactive, 2 and up = bulk).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers

from xrserve.core.config import Priority
from xrserve.core.errors import BadRequest

MAX_DEADLINE_MS = 24 * 3600 * 1000


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_DEADLINE_MS * 1000:
        raise BadRequest(f"{what} must be a positive number of milliseconds, got {value!r}")
    return float(value)


def deadline_from(parameters: dict[str, Any], headers: Headers, arrival: float) -> float | None:
    if "deadline_ms" in parameters:
        return arrival + _number(parameters["deadline_ms"], "parameter 'deadline_ms'") / 1000
    if "timeout" in parameters:
        return arrival + _number(parameters["timeout"], "parameter 'timeout' (microseconds)") / 1_000_000
    header = headers.get("x-deadline-ms")
    if header is not None:
        try:
            value = float(header)
        except ValueError:
            raise BadRequest(f"X-Deadline-Ms must be a number of milliseconds, got '{header}'") from None
        return arrival + _number(value, "X-Deadline-Ms") / 1000
    return None


def priority_from(parameters: dict[str, Any]) -> Priority | None:
    value = parameters.get("priority")
    if value is None or value == 0:
        return None
    if value in ("interactive", "bulk"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return "interactive" if value == 1 else "bulk"
    raise BadRequest(f"parameter 'priority' must be 'interactive', 'bulk' or a positive integer, got {value!r}")
