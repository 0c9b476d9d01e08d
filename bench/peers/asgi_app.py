"""A second floor, below FastAPI: the same route as a raw ASGI callable under uvicorn.

Run with `BENCH_ONNX=model.onnx uvicorn asgi_app:app --loop uvloop --http httptools`.
Next to `fastapi_app.py` it shows what FastAPI's routing, dependency and middleware
layers cost per request; next to xrserve, what a server built on raw ASGI could reach.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from tinymodel import LinearModel, decode_oip, encode_oip

model = LinearModel(os.environ["BENCH_ONNX"])
PREFIX, SUFFIX = "/v2/models/", "/infer"


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if scope["method"] != "POST" or not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = encode_oip(path[len(PREFIX) : -len(SUFFIX)], model(decode_oip(body)))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})
