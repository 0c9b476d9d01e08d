"""The audit and HTTP-metrics middleware: one record per request, written after the answer.

Pure ASGI (no BaseHTTPMiddleware) so it costs a few microseconds. It reads what the
route left in the ASGI scope: the matched route template, the path parameters, and
the key and model the guard recorded.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xrserve.core.metrics import Metrics
from xrserve.security.audit import AuditLog, AuditRecord
from xrserve.security.guard import KEY_SCOPE, MODEL_SCOPE


class AuditMiddleware:
    def __init__(self, app: ASGIApp, audit: AuditLog, metrics: Metrics) -> None:
        self.app = app
        self.audit = audit
        self.metrics = metrics
        self._counters: dict[tuple[str, int], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500 if scope["type"] == "http" else 101

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.close" and status == 101:
                status = 1000 if message.get("code", 1000) == 1000 else message.get("code", 1000)
            await send(message)

        # an HTTP request is "in the server" (could still join a forming batch) for its whole
        # life; a WebSocket session counts each of its messages instead (api/session.py)
        counted = scope["type"] == "http"
        self.metrics.in_server += counted
        try:
            await self.app(scope, receive, watched)
        finally:
            self.metrics.in_server -= counted
            self._record(scope, scope.get("xrserve.status", status), (time.perf_counter() - started) * 1000)

    def _record(self, scope: Scope, status: int, latency_ms: float) -> None:
        template = scope.get("xrserve.route") or getattr(scope.get("route"), "path", None) or "(unmatched)"
        params = scope.get("path_params") or {}
        client = scope.get("client")
        self.audit.record(
            AuditRecord(
                time=time.time(),
                key_id=scope.get(KEY_SCOPE),
                method=scope.get("method", "WS"),
                route=template,
                model=scope.get(MODEL_SCOPE) or params.get("model_name"),
                version=scope.get("xrserve.version") or params.get("model_version"),
                status=status,
                latency_ms=round(latency_ms, 3),
                client=client[0] if client else None,
                note=scope.get("xrserve.note"),
            )
        )
        counter = self._counters.get((template, status))
        if counter is None:
            counter = self._counters[(template, status)] = self.metrics.http_requests.labels(template, str(status))
        counter.inc()  # type: ignore[attr-defined]


#: the status recorded for a request whose client went away before the answer (nginx's convention)
CLIENT_CLOSED = 499


#: a request still unanswered this long after its body arrived starts watching for its client to
#: leave; sooner ones are not watched, because a watcher (a task per request) costs more than they do
WATCH_AFTER_S = 0.02


class CancelOnDisconnect:
    """A client that goes away cancels its request: a queued request never runs, a stream stops.

    Once the route has read the whole body and `WATCH_AFTER_S` has passed without an answer, a
    watcher waits for `http.disconnect`; if it comes before the answer has been sent, the
    request's task is cancelled, which the scheduler sees as a cancelled future (dropped from the
    queue) or a cancelled stream (the model stops at its next step). Routes that read `receive`
    themselves afterwards (streaming responses watching for the disconnect) get the message from
    the watcher. The delay keeps the hot path free of the watcher's cost: a request answered in
    milliseconds has nothing left to cancel.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        handler = asyncio.current_task()
        assert handler is not None
        loop = asyncio.get_running_loop()
        answered = cancelled_by_us = False
        gone: asyncio.Event | None = None
        watcher: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle | None = None

        async def watch() -> None:
            nonlocal cancelled_by_us
            while (await receive())["type"] != "http.disconnect":
                pass
            assert gone is not None
            gone.set()
            if not answered:
                cancelled_by_us = True
                handler.cancel()

        def start_watching() -> None:
            nonlocal gone, watcher
            if not answered:
                gone = asyncio.Event()
                watcher = loop.create_task(watch())

        async def body_then_watch() -> Message:
            nonlocal timer
            if timer is not None:  # the route reads on after the body: it is waiting for the disconnect
                if watcher is None:
                    timer.cancel()
                    start_watching()
                assert gone is not None
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                timer = loop.call_later(WATCH_AFTER_S, start_watching)
            return message

        async def answering(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        try:
            await self.app(scope, body_then_watch, answering)
        except asyncio.CancelledError:
            if not cancelled_by_us:
                raise
            handler.uncancel()
            scope["xrserve.note"] = "the client went away before the answer; its work was cancelled"
            scope["xrserve.status"] = CLIENT_CLOSED
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()
