"""A small synchronous XR-session client for tests, on the `websockets` package.

It speaks the wire format the way a headset would (src/xrserve/session/protocol.py is
only used for the header layout constant), and keeps messages that arrive while the
test waits for another one, so interleaved streams can be checked in order.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from websockets.sync.client import connect

HEADER = struct.Struct("<BBHId")


class SessionClient:
    def __init__(self, base_url: str, key: str | None = None, *, via_query: bool = False, **connect_args: Any) -> None:
        url = base_url.replace("http://", "ws://", 1) + "/v1/session"
        headers = {}
        if key and via_query:
            url += f"?key={key}"
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        self._exit = contextlib.ExitStack()
        self.socket = self._exit.enter_context(connect(url, additional_headers=headers, max_size=2**25, **connect_args))
        self.backlog: list[Any] = []  # dicts for JSON messages, (header tuple, payload) for binary
        self.hello = self.next()

    def __enter__(self) -> SessionClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._exit.close()

    # -- sending ----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(json.dumps(message))

    def send_binary(
        self, channel: int, sequence: int, payload: bytes, *, timestamp_ms: float | None = None, flags: int = 0
    ) -> None:
        stamp = time.time() * 1000 if timestamp_ms is None else timestamp_ms
        self.socket.send(HEADER.pack(1, flags, channel, sequence, stamp) + payload)

    def open(self, stream: str, kind: str, **options: Any) -> dict[str, Any]:
        """Open a stream and return its `opened` message (or raise with the error the server sent)."""
        self.send({"type": "open", "stream": stream, "kind": kind, **options})
        reply = self.wait(
            lambda m: isinstance(m, dict) and m.get("stream") == stream and m["type"] in ("opened", "error")
        )
        if reply["type"] == "error":
            raise AssertionError(f"open failed: {reply}")
        return reply

    # -- receiving --------------------------------------------------------------------

    def _receive(self, timeout: float) -> Any:
        raw = self.socket.recv(timeout=timeout)
        if isinstance(raw, bytes):
            return HEADER.unpack_from(raw), raw[HEADER.size :]
        return json.loads(raw)

    def next(self, timeout: float = 30) -> Any:
        if self.backlog:
            return self.backlog.pop(0)
        return self._receive(timeout)

    def wait(self, predicate: Callable[[Any], bool], timeout: float = 60) -> Any:
        """The first message (kept or new) matching `predicate`; others stay in the backlog."""
        for index, message in enumerate(self.backlog):
            if predicate(message):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout} s; kept: {self.backlog[-5:]}")
            message = self._receive(left)
            if predicate(message):
                return message
            self.backlog.append(message)

    def wait_type(self, type_: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        return self.wait(
            lambda m: isinstance(m, dict) and m.get("type") == type_ and all(m.get(k) == v for k, v in fields.items()),
            timeout,
        )
