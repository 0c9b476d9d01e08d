"""The audit and HTTP-metrics middleware: one record per request, written before the answer leaves.

Pure ASGI (no BaseHTTPMiddleware) so it costs a few microseconds plus the record's write. It
reads what the route left in the ASGI scope: the matched route template, the path
parameters, and the key and model the guard recorded.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xrserve.api.errors import error_body
from xrserve.core.metrics import Metrics
from xrserve.security.audit import AuditLog, AuditRecord, AuditUnavailable
from xrserve.security.guard import KEY_SCOPE, MODEL_SCOPE, NOTE_SCOPE

#: the status a request gets while its audit record cannot be written
AUDIT_DOWN = 503
#: a refusal's Retry-After: the trail is tried again with every request
AUDIT_RETRY_S = "5"


def audit_down_message(reason: str, remedy: str = "free disk space (or lift the file-size limit) where the "
                       "server keeps its data") -> str:  # fmt: skip
    return (
        f"the audit trail cannot be written: {reason}; requests are refused rather than served without one. "
        f"The operator must {remedy}; requests are served again as soon as a record can be written"
    )


class _Refused(Exception):
    """Raised into the app when its response was replaced by a 503: it stops producing the rest."""


class AuditMiddleware:
    """Writes each request's record when its response starts, before passing the start on.

    A response is sent only after its record is in the operating system, or committed to the shared
    database (`AuditLog.record_async`; the event loop is not blocked on a database's round trip).
    If the record cannot be written, the client gets a 503 saying so instead of the response,
    and every later request gets the same 503 (each one trying to write its refusal's record)
    until a write succeeds again; each first probes the trail (`AuditLog.probe`), so the first
    request after it came back is served. A request answered without a response start (the
    client left: 499; an exception: 500) is recorded when it ends; a streamed answer whose
    outcome changed after its first byte (the client left mid-stream, output moderated) gets a
    second record with the final status and note. A WebSocket is recorded when it closes, with its close code.
    """

    def __init__(self, app: ASGIApp, audit: AuditLog, metrics: Metrics) -> None:
        self.app = app
        self.audit = audit
        self.metrics = metrics
        self._counters: dict[tuple[str, int], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        if self.audit.failure is not None and not await self.audit.probe_async():
            return await self._refuse(scope, receive, send, started)
        http = scope["type"] == "http"
        status = 500 if http else 101
        written: tuple[int, str | None] | None = None  # what the record written at the response start says
        replaced = False

        async def watched(message: Message) -> None:
            nonlocal status, written, replaced
            kind = message["type"]
            if replaced:
                raise _Refused
            if kind == "http.response.start":
                status = message["status"]
                written = (status, scope.get(NOTE_SCOPE))
                try:
                    await self._record(scope, status, started)
                except AuditUnavailable as exc:
                    replaced = True
                    status = AUDIT_DOWN
                    await self._send_refusal(scope, send, str(exc))
                    raise _Refused from exc
            elif kind == "websocket.close" and status == 101:
                status = 1000 if message.get("code", 1000) == 1000 else message.get("code", 1000)
            await send(message)

        # an HTTP request is "in the server" (could still join a forming batch) for its whole
        # life; a WebSocket session counts each of its messages instead (api/session.py)
        self.metrics.in_server += http
        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not replaced:  # else it is our _Refused, however the app wrapped it on its way out
                raise
        finally:
            self.metrics.in_server -= http
            final = scope.get("xrserve.status", status)
            if not replaced and (written is None or written != (final, scope.get(NOTE_SCOPE))):
                try:  # no response start (499, an exception), a WebSocket, or a stream that ended otherwise
                    await self._record(scope, final, started)
                except AuditUnavailable:
                    pass  # nothing left to refuse; the next requests are refused
            self._count(scope, final)

    async def _record(self, scope: Scope, status: int, started: float) -> None:
        params = scope.get("path_params") or {}
        client = scope.get("client")
        await self.audit.record_async(
            AuditRecord(
                time=time.time(),
                key_id=scope.get(KEY_SCOPE),
                method=scope.get("method", "WS"),
                route=self._template(scope),
                model=scope.get(MODEL_SCOPE) or params.get("model_name"),
                version=scope.get("xrserve.version") or params.get("model_version"),
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                client=client[0] if client else None,
                note=scope.get(NOTE_SCOPE),
            )
        )

    @staticmethod
    def _template(scope: Scope) -> str:
        return scope.get("xrserve.route") or getattr(scope.get("route"), "path", None) or "(unmatched)"

    def _count(self, scope: Scope, status: int) -> None:
        template = self._template(scope)
        counter = self._counters.get((template, status))
        if counter is None:
            counter = self._counters[(template, status)] = self.metrics.http_requests.labels(template, str(status))
        counter.inc()  # type: ignore[attr-defined]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        """The trail could not be written last time: refuse, and try to record the refusal (which may heal it)."""
        reason = self.audit.failure or "unknown"
        scope[NOTE_SCOPE] = "refused: the audit trail could not be written"
        try:
            await self._record(scope, AUDIT_DOWN, started)
        except AuditUnavailable as exc:
            reason = str(exc)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
        await self._send_refusal(scope, send, reason)
        self._count(scope, AUDIT_DOWN)

    async def _send_refusal(self, scope: Scope, send: Send, reason: str) -> None:
        message = audit_down_message(reason, self.audit.remedy)
        body = json.dumps(error_body(message, AUDIT_DOWN, scope.get("path", ""))).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", AUDIT_RETRY_S.encode()),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": AUDIT_DOWN, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": AUDIT_DOWN, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1013, "reason": "the audit trail cannot be written"})


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
