"""Errors that carry their own HTTP status.

Every layer raises these; the transports turn them into `{"error": "..."}` with the
status below. The message is written for the person reading it: it names the thing
that is wrong and, where there is one, the fix.
"""

from __future__ import annotations

from pydantic import ValidationError


class XRServeError(Exception):
    """Base class: a message for a person and the HTTP status that goes with it."""

    status_code: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(XRServeError):
    status_code = 400


class Unauthorized(XRServeError):
    status_code = 401


class Forbidden(XRServeError):
    status_code = 403


class NotFound(XRServeError):
    status_code = 404


class DeadlineExceeded(XRServeError):
    """The request's own deadline passed before it could be computed.

    408 rather than 504: the server did not fail, the client said the answer was
    worth nothing after a point in time and that point has passed (a camera frame
    the headset has already drawn past). It is a 4xx so that clients and fuzzers
    do not mistake a dropped frame for a server fault.
    """

    status_code = 408


class Superseded(XRServeError):
    """A newer frame of the same stream arrived while this one still waited (latest-frame-wins).

    409: the request conflicts with a newer one from the same client, which replaced it;
    it was never computed. A camera stream reports it as a skipped frame.
    """

    status_code = 409


class PayloadTooLarge(XRServeError):
    status_code = 413


class TooManyRequests(XRServeError):
    """This client has asked for more than it may have in flight; it may ask again once some is done."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class Unavailable(XRServeError):
    """Temporarily cannot serve: queue full, model restarting. Retry later."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})

    @classmethod
    def unloaded(cls, name: str, version: str) -> Unavailable:
        """What a request still queued or running gets when its version is unloaded (any engine)."""
        return cls(f"model '{name}' version {version} was unloaded")


class ModelFailed(XRServeError):
    """The model itself raised while computing a valid request."""

    status_code = 500


_BY_STATUS: dict[int, type[XRServeError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        DeadlineExceeded,
        Superseded,
        PayloadTooLarge,
        ModelFailed,
    )
}


def error_for(status: int, message: str, headers: dict[str, str] | None = None) -> XRServeError:
    """The error a status stands for, rebuilt on this side of a process (or Ray) boundary.

    The one mapping every runner uses, so a model's error reaches the client with the same
    status and message whether it ran inline, in a thread or in a worker process.
    """
    if status == Unavailable.status_code:
        error: XRServeError = Unavailable(message)
    else:
        error = _BY_STATUS.get(status, ModelFailed)(message)
        if error.status_code != status:  # a status without a class of its own keeps its number
            error.status_code = status
    if headers:
        error.headers = dict(headers)
    return error


MAX_ECHOED = 200  # characters of a refused value quoted in a 400


def validation_problems(exc: ValidationError, what: str, unknown: str) -> str:
    """A pydantic error as one line a person can act on: each field, what is wrong, what was sent.

    `what` names a field ("option", "parameter"); `unknown` ends the line for a name that is not one.
    """
    problems = []
    for error in exc.errors()[:5]:
        name = ".".join(str(p) for p in error["loc"]) or "(all)"
        if error["type"] == "extra_forbidden":
            problems.append(f"{what} '{name}' {unknown}")
        else:
            sent = repr(error["input"])
            if len(sent) > MAX_ECHOED:  # a whole JSON schema echoed back hides the message
                sent = sent[:MAX_ECHOED] + "..."
            problems.append(f"{what} '{name}': {error['msg'].removeprefix('Value error, ')} (got {sent})")
    return "; ".join(problems)


def model_error(model: str, exc: BaseException) -> XRServeError:
    """What a model's exception means for the client: its own verdict, or a 500 naming the model."""
    if isinstance(exc, XRServeError):
        return exc
    return ModelFailed(f"model '{model}' failed: {type(exc).__name__}: {exc}")
