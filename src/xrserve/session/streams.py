"""Stream kinds: the base class a pipeline subclasses to live inside an XR session.

A stream kind is registered with `@stream_kind("camera")`. The session creates one
instance per `open` message, feeds it the binary and JSON messages addressed to it,
and closes it when the client closes the stream or the socket. Handlers must return
quickly: long work (a model call, a whole NPC turn) goes in a task the stream owns
(`self.spawn`) so one slow stream never holds up the others on the same socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from xrserve.core.errors import BadRequest, XRServeError, validation_problems
from xrserve.session.protocol import FrameHeader

if TYPE_CHECKING:
    from xrserve.session.session import Session

log = logging.getLogger("xrserve.session")

STREAM_KINDS: dict[str, type[SessionStream]] = {}


class StreamOptions(BaseModel):
    """Base of a stream kind's `open` options: an unknown option is a 400 naming it, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def parse_options(kind: str, options_class: type[BaseModel], raw: dict[str, Any]) -> Any:
    """The `open` message's options as the stream kind declared them, or a 400 naming each problem."""
    try:
        return options_class.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, "option", f"is not an option of a {kind} stream")
        known = ", ".join(sorted(options_class.model_fields))
        raise BadRequest(f"{problems}. A {kind} stream's options are: {known}") from None


def stream_kind(name: str):  # noqa: ANN201 - a class decorator
    """Register a `SessionStream` subclass under the `kind` clients name in `open`."""

    def register(cls: type[SessionStream]) -> type[SessionStream]:
        cls.kind = name
        STREAM_KINDS[name] = cls
        return cls

    return register


class SessionStream:
    """One stream in a session. Override `open`, `on_binary`, `on_message`, `close` as needed."""

    kind: ClassVar[str] = ""
    #: The `open` options this kind reads (checked before `open` runs; `self.options` is an instance).
    Options: ClassVar[type[BaseModel]] = StreamOptions

    def __init__(self, session: Session, name: str, channel: int, options: dict[str, Any]) -> None:
        self.session = session
        self.client = session.client
        self.name = name
        self.channel = channel
        self.options = parse_options(self.kind, self.Options, options)
        self.closed = False
        self._tasks: set[asyncio.Task] = set()
        #: Called with each JSON message this stream sends, before it goes out: how another stream of
        #: the same session follows this one (an npc stream reads a camera stream's face-emotion results).
        #: A watcher must be quick and must not raise.
        self.watchers: list[Callable[[dict[str, Any]], None]] = []

    # -- what a stream kind implements -------------------------------------------------

    async def open(self) -> dict[str, Any]:
        """Check what the options refer to (models, scopes); return extra fields for `opened`."""
        return {}

    async def on_binary(self, header: FrameHeader, payload: memoryview) -> None:
        raise BadRequest(f"stream '{self.name}' ({self.kind}) takes no binary messages")

    async def on_message(self, message: dict[str, Any]) -> None:
        raise BadRequest(f"stream '{self.name}' ({self.kind}) has no message type '{message.get('type')}'")

    async def close(self) -> None:
        """Stop the stream's work. The base cancels every task started with `spawn`."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- helpers -------------------------------------------------------------------------

    async def send(self, type_: str, **fields: Any) -> None:
        """A JSON message to the client, tagged with this stream's name."""
        if not self.closed:
            message = {"type": type_, "stream": self.name, **fields}
            for watcher in self.watchers:
                watcher(message)
            await self.session.send_json(message)

    async def send_binary(
        self, sequence: int, payload: bytes, *, flags: int = 0, timestamp_ms: float | None = None
    ) -> None:
        if not self.closed:
            await self.session.send_binary(self.channel, sequence, payload, flags=flags, timestamp_ms=timestamp_ms)

    async def send_error(self, error: BaseException) -> None:
        await self.session.send_error(error, stream=self.name)

    def spawn(self, work: Awaitable[Any], *, name: str = "") -> asyncio.Task:
        """Run `work` as this stream's task: cancelled on close, its errors reported to the client."""
        task = asyncio.ensure_future(self._reported(work))
        if name:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _reported(self, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except XRServeError as error:
            await self.send_error(error)
        except Exception as error:  # a bug of ours: the client hears of it, the session lives on
            log.exception("stream %s (%s) failed", self.name, self.kind)
            await self.send_error(error)
