"""Every error leaves as `{"error": "..."}` with the status that fits it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from xrserve.api.oip_schema import ErrorBody
from xrserve.api.openai_protocol import ErrorDetail, ErrorResponse
from xrserve.core.errors import XRServeError

log = logging.getLogger("xrserve.api")


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(message: str, status: int, path: str, param: str | None = None) -> dict:
    """OIP's `{"error": "..."}`; on /v1 routes OpenAI's shape, which its client libraries read.

    Both are the models the OpenAPI document declares (`oip_schema.ErrorBody`,
    `openai_protocol.ErrorResponse`), so the bodies cannot drift from it. `param`: the
    request field at fault, where one is (OpenAI's `error.param`).
    """
    if path.startswith("/v1/"):
        kind = _OPENAI_TYPES.get(status, "server_error")
        return ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=status)).model_dump()
    return ErrorBody(error=message).model_dump()


def error_response(error: XRServeError, path: str = "") -> JSONResponse:
    return JSONResponse(
        error_body(error.message, error.status_code, path, getattr(error, "param", None)),
        status_code=error.status_code,
        headers=error.headers,
    )


def _validation_param(exc: RequestValidationError) -> str | None:
    """The body field the first error is about (`top_logprobs`, `messages.0.role`), for OpenAI's `param`."""
    errors = exc.errors()
    if not errors:
        return None
    loc = [str(p) for p in errors[0].get("loc", ())]
    if loc[:1] != ["body"] or len(loc) < 2:
        return None
    return ".".join(loc[1:])


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = error.get("msg", "is invalid")
        if error.get("type") == "json_invalid":
            message = "the request body is not valid JSON"
        parts.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XRServeError)
    async def _ours(request: Request, exc: XRServeError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = error_body(_validation_message(exc), 400, request.url.path, _validation_param(exc))
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # every route on this path, not only the first one the router tried: a path served by
            # several functions (GET, POST and DELETE of a canary) must list all its methods
            allowed = sorted(
                {
                    method
                    for route in request.app.routes
                    if isinstance(route, Route) and route.path_regex.match(request.url.path)
                    for method in route.methods or ()
                }
            )
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            message = (
                f"{request.method} is not allowed on {request.url.path}; it takes {', '.join(allowed)}; "
                "see /docs for the API"
            )
        return JSONResponse(
            error_body(message, exc.status_code, request.url.path), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = f"internal error ({type(exc).__name__}); the server log has details"
        return JSONResponse(error_body(message, 500, request.url.path), status_code=500)
