"""Per-key rate limits over HTTP: the one place every request (the inference fast path included) is counted.

Pure ASGI, around the fast path and FastAPI. It leaves `admit` in the scope; the guard calls it
once it knows the request's key (before the body is read), so a key over its requests per
minute gets 429 with `Retry-After` from whichever route it called, and a route that needs no
key counts nothing. On the way out it adds the `x-ratelimit-*` headers OpenAI's clients read to
every response of a key that has a request or token limit. The LLM routes check and charge
tokens themselves (`check_tokens` / `charge_tokens`): only they know the usage.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xrserve.security.guard import ADMIT_SCOPE, IDENTIFIED_SCOPE, NOTE_SCOPE
from xrserve.security.keys import ApiKey
from xrserve.security.limits import RateLimited, RateLimits


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limits = self.limits

        def admit(key: ApiKey) -> None:
            try:
                limits.admit_request(key)
            except RateLimited:
                scope[NOTE_SCOPE] = f"rate limited: over {key.limits.rpm} requests per minute"
                raise

        scope[ADMIT_SCOPE] = admit

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                key: ApiKey | None = scope.get(IDENTIFIED_SCOPE)
                if key is not None and key.limits:
                    extra = limits.headers(key)
                    if extra:
                        message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
