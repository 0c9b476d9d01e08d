"""Scheduling controls a client may attach to any request: deadline and priority.

Deadline: request parameter `deadline_ms` (relative, from arrival), Triton's
`timeout` parameter (microseconds), or the `X-Deadline-Ms` header (the transport
passes its value). Priority: a class name (`frame`, `first_speech`, `interactive`,
`bulk`) or a Triton integer (1 = interactive, 2 and up = bulk).
"""

from __future__ import annotations

from typing import Any

from xrserve.core.errors import BadRequest
from xrserve.core.request import Priority

MAX_DEADLINE_MS = 24 * 3600 * 1000


def _number(value: Any, what: str, limit: float, unit: str = "milliseconds") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= limit:
        raise BadRequest(f"{what} must be a positive number of {unit} (at most 24 hours), got {value!r}")
    return float(value)


def deadline_from(parameters: dict[str, Any], header: str | None, arrival: float) -> float | None:
    """The request's deadline on the monotonic clock, from its parameters or the X-Deadline-Ms header value."""
    if "deadline_ms" in parameters:
        return arrival + _number(parameters["deadline_ms"], "parameter 'deadline_ms'", MAX_DEADLINE_MS) / 1000
    if "timeout" in parameters:
        timeout = _number(parameters["timeout"], "parameter 'timeout'", MAX_DEADLINE_MS * 1000, "microseconds")
        return arrival + timeout / 1_000_000
    if header is not None:
        try:
            value = float(header)
        except ValueError:
            raise BadRequest(f"X-Deadline-Ms must be a number of milliseconds, got '{header}'") from None
        return arrival + _number(value, "X-Deadline-Ms", MAX_DEADLINE_MS) / 1000
    return None


def priority_from(parameters: dict[str, Any]) -> Priority | None:
    value = parameters.get("priority")
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return Priority.INTERACTIVE if value == 1 else Priority.BULK
    names = ", ".join(f"'{p.name.lower()}'" for p in Priority)
    raise BadRequest(f"parameter 'priority' must be one of {names} or a positive integer, got {value!r}")
