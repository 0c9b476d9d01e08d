"""`/v1/session`: the XR session WebSocket. Thin: authenticate, then feed the `Session`.

Browsers cannot set headers on a WebSocket, so the key may also come as `?key=xrs_...`.
An authentication failure is told in an `error` message (status 401/403) before the
socket closes with code 4401/4403, because a browser never sees a refused handshake's
status. A key at its `--max-sessions` is refused the same way (429, code 4429). Messages over
`MAX_MESSAGE_BYTES` are refused one by one; the session stays.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from xrserve.core.errors import PayloadTooLarge, XRServeError
from xrserve.pipelines import load_stream_kinds
from xrserve.security.guard import KEY_SCOPE
from xrserve.session.session import Session

log = logging.getLogger("xrserve.session")

router = APIRouter()
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

load_stream_kinds()


@router.websocket("/v1/session")
async def session_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    websocket.scope["xrserve.route"] = "/v1/session"
    guard = websocket.app.state.guard
    header = websocket.headers.get("authorization")
    if header is None and websocket.query_params.get("key"):
        header = f"Bearer {websocket.query_params['key']}"
    try:
        key = guard.identify_header(header, websocket.scope)  # the client's address counts toward lockouts
    except XRServeError as error:
        await websocket.send_json({"type": "error", "status": error.status_code, "message": error.message})
        await websocket.close(code=4000 + error.status_code, reason=error.message[:120])
        return
    websocket.scope[KEY_SCOPE] = key.id
    limits = websocket.app.state.rate_limits
    try:
        session_closed = limits.open_session(key)  # the key's --max-sessions
    except XRServeError as error:
        websocket.scope["xrserve.note"] = "rate limited: too many sessions open"
        await websocket.send_json({"type": "error", "status": error.status_code, "message": error.message})
        await websocket.close(code=4000 + error.status_code, reason=error.message[:120])
        return
    session = Session(
        websocket.app.state.scheduler,
        key,
        websocket.send_text,
        websocket.send_bytes,
        app_state=websocket.app.state,
        limits=limits,
        keys=guard.keys,
    )
    metrics = websocket.app.state.scheduler.metrics
    try:
        await session.send_json(session.hello())
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text, data = message.get("text"), message.get("bytes")
            size = len(text) if text is not None else len(data or b"")
            if size > MAX_MESSAGE_BYTES:
                await session.send_error(
                    PayloadTooLarge(
                        f"message of {size} bytes is over the session limit of {MAX_MESSAGE_BYTES} bytes; "
                        f"send smaller frames (JPEG at a lower resolution or quality) or shorter audio chunks"
                    )
                )
                continue
            # while its handler runs, a message is work on its way in: a forming batch may wait for it
            metrics.in_server += 1
            try:
                if text is not None:
                    await session.receive_text(text)
                elif data is not None:
                    await session.receive_bytes(data)
            finally:
                metrics.in_server -= 1
    except WebSocketDisconnect:
        pass
    finally:
        session_closed()
        await session.close()
