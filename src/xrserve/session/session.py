"""One XR session: the streams open on one WebSocket, and the one writer back to the client.

The session is transport-agnostic: it is given a `send_text`/`send_bytes` pair and fed
the messages the socket receives, so it can be tested without a socket and a second
transport (WebTransport, a Ray actor) can reuse it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from xrserve.core.client import InferenceClient
from xrserve.core.errors import BadRequest, NotFound, XRServeError
from xrserve.security.guard import require_scope
from xrserve.security.keys import ANONYMOUS, ApiKey, KeyStore
from xrserve.security.limits import RateLimits
from xrserve.session import protocol
from xrserve.session.streams import STREAM_KINDS, SessionStream

log = logging.getLogger("xrserve.session")

MAX_STREAMS = 16
MAX_STREAM_NAME = 64


def server_time_ms() -> float:
    return time.time() * 1000


class Session:
    def __init__(
        self,
        client: InferenceClient,
        key: ApiKey,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
        *,
        app_state: Any = None,
        limits: RateLimits | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.client = client
        self.key = key
        self.app_state = app_state  # the server's shared state (settings, moderator) for stream kinds that need it
        self.limits = limits  # the key's rate limits: each JSON message is a request, camera frames have their own
        self._keys = keys  # to see limits changed while the session is open
        self.streams: dict[str, SessionStream] = {}
        self.by_channel: dict[int, SessionStream] = {}
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._write = asyncio.Lock()  # one writer: many stream tasks send on one socket
        self._channels = itertools.count(1)
        self.closed = False

    # -- what the client sees first --------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "session": self.id,
            "protocol": protocol.PROTOCOL_VERSION,
            "kinds": sorted(STREAM_KINDS),
            "header": "<BBHId: version u8, flags u8, channel u16, "
            "sequence u32, timestamp_ms f64 (little-endian, 16 bytes)",
            "server_time_ms": server_time_ms(),
            "max_streams": MAX_STREAMS,
        }

    # -- sending ---------------------------------------------------------------------------

    async def send_json(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        text = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        async with self._write:
            await self._send_text(text)

    async def send_binary(
        self, channel: int, sequence: int, payload: bytes, *, flags: int = 0, timestamp_ms: float | None = None
    ) -> None:
        if self.closed:
            return
        stamp = server_time_ms() if timestamp_ms is None else timestamp_ms
        message = protocol.pack(protocol.FrameHeader(channel, sequence, stamp, flags), payload)
        async with self._write:
            await self._send_bytes(message)

    async def send_error(self, error: BaseException, *, stream: str | None = None, request: str | None = None) -> None:
        if isinstance(error, XRServeError):
            status, message = error.status_code, error.message
        else:
            status, message = 500, f"internal error ({type(error).__name__}); the session is still usable"
        body: dict[str, Any] = {"type": "error", "status": status, "message": message}
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:  # a rate limit: when to send again
            body["retry_after_s"] = round(retry_after, 3)
        if stream is not None:
            body["stream"] = stream
        if request is not None:
            body["request"] = request
        await self.send_json(body)

    def authorize(self, model: str) -> None:
        """Stream kinds call this for every model they will use: the session's key must cover it."""
        require_scope(self.key, model)

    # -- rate limits (security/limits.py): the session applies them to what it receives ----------

    def _current_key(self) -> ApiKey:
        """The key as the server knows it now (its limits may have changed since the session opened)."""
        if self._keys is None or self.key is ANONYMOUS:
            return self.key
        return self._keys.current(self.key.id) or self.key

    def check_tokens(self) -> None:
        """Before an LLM generation of the session (an NPC turn): 429 once the key's token budgets are spent."""
        if self.limits is not None:
            self.limits.check_tokens(self._current_key())

    def charge_tokens(self, tokens: int) -> None:
        """After it: its prompt and completion tokens come off the key's budgets (--tpm, --tpd)."""
        if self.limits is not None:
            self.limits.charge_tokens(self._current_key(), tokens)

    def admit_frame(self) -> bool:
        """Whether a camera frame may be computed now under the key's frames per second (else: skipped)."""
        return self.limits is None or self.limits.admit_frame(self._current_key())

    # -- receiving -------------------------------------------------------------------------

    async def receive_text(self, text: str) -> None:
        """Handle one JSON message; an error in it is answered, never raised."""
        message: Any = None
        try:
            try:
                message = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f'text message is not JSON ({exc}); send {{"type": ..., ...}}') from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise BadRequest("a text message must be a JSON object with a string 'type'")
            if self.limits is not None:  # every JSON message counts as a request against --rpm
                self.limits.admit_request(self._current_key(), "session messages count as requests")
            await self._dispatch(message)
        except Exception as error:  # noqa: BLE001 - every error goes back to the client
            if not isinstance(error, XRServeError):
                log.exception("session %s: message failed", self.id)
            stream = message.get("stream") if isinstance(message, dict) else None
            request = message.get("id") if isinstance(message, dict) else None
            await self.send_error(
                error,
                stream=stream if isinstance(stream, str) else None,
                request=request if isinstance(request, str) else None,
            )

    async def receive_bytes(self, data: bytes) -> None:
        try:
            header, payload = protocol.unpack(data)
            stream = self.by_channel.get(header.channel)
            if stream is None:
                raise NotFound(
                    f"no open stream has channel {header.channel}; open one with "
                    f'{{"type": "open", "stream": ..., "kind": ...}} and use the channel '
                    f"its 'opened' message gives"
                )
            try:
                protocol.check_timestamp(header)
                await stream.on_binary(header, payload)
            except Exception as error:  # noqa: BLE001
                if not isinstance(error, XRServeError):
                    log.exception("session %s: stream %s failed on a binary message", self.id, stream.name)
                await self.send_error(error, stream=stream.name)
        except XRServeError as error:
            await self.send_error(error)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            await self.send_json({"type": "pong", "t": message.get("t"), "server_time_ms": server_time_ms()})
        elif kind == "open":
            await self._open(message)
        elif kind == "close":
            await self._close_stream(self._stream_of(message))
        else:
            await self._stream_of(message).on_message(message)

    def _stream_of(self, message: dict[str, Any]) -> SessionStream:
        name = message.get("stream")
        if not isinstance(name, str):
            raise BadRequest(
                f"message type '{message['type']}' needs a 'stream' naming an open stream "
                f"(or is not a session message: ping, open, close)"
            )
        stream = self.streams.get(name)
        if stream is None:
            raise NotFound(f"no open stream named '{name}'; open streams: {sorted(self.streams) or 'none'}")
        return stream

    async def _open(self, message: dict[str, Any]) -> None:
        name, kind = message.get("stream"), message.get("kind")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_STREAM_NAME:
            raise BadRequest(f"'open' needs a 'stream' name of 1-{MAX_STREAM_NAME} characters")
        if name in self.streams:
            raise BadRequest(f"stream '{name}' is already open; close it first or pick another name")
        cls = STREAM_KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise BadRequest(f"unknown stream kind {kind!r}; the kinds are {sorted(STREAM_KINDS)}")
        if len(self.streams) >= MAX_STREAMS:
            raise BadRequest(f"a session holds at most {MAX_STREAMS} streams; close one first")
        options = {k: v for k, v in message.items() if k not in ("type", "stream", "kind")}
        stream = cls(self, name, next(self._channels) & protocol.MAX_CHANNEL, options)
        extra = await stream.open()
        self.streams[name] = stream
        self.by_channel[stream.channel] = stream
        await self.send_json({"type": "opened", "stream": name, "kind": kind, "channel": stream.channel, **extra})

    async def _close_stream(self, stream: SessionStream) -> None:
        self.streams.pop(stream.name, None)
        self.by_channel.pop(stream.channel, None)
        await stream.close()
        await self.send_json({"type": "closed", "stream": stream.name})

    async def close(self) -> None:
        """The socket is gone: stop every stream's work; nothing more is sent."""
        self.closed = True
        streams = list(self.streams.values())
        self.streams.clear()
        self.by_channel.clear()
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
