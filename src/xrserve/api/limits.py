"""Request size limits, enforced before a body is buffered."""

from __future__ import annotations

import zlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xrserve.core.errors import BadRequest, PayloadTooLarge


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than this server's limit of {limit} bytes "
        f"({limit / 2**20:.0f} MiB; change it with `xrserve serve --max-body-mb`)"
    )


class BodyLimitMiddleware:
    """Rejects by Content-Length up front, and stops streamed bodies at the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    from xrserve.api.errors import error_response

                    response = error_response(
                        too_large(self.limit)
                        if value.isdigit()
                        else BadRequest("Content-Length must be a whole number of bytes"),
                        scope["path"],
                    )
                    return await response(scope, receive, send)
                return await self.app(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise too_large(self.limit)
            return message

        await self.app(scope, counted, send)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate without letting a small bomb exceed the limit."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"Content-Encoding '{encoding}' is not supported; use gzip, deflate or none")
    decoder = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the {encoding} body cannot be decompressed: {exc}") from None
    if len(data) > limit:
        raise too_large(limit)
    return data
