"""One open stream of a streaming model, as the scheduler hands it to a transport."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from xrserve.core.errors import BadRequest, ModelFailed, Unavailable, XRServeError

TERMINAL = ("done", "error")
_ERRORS: dict[int, type[XRServeError]] = {400: BadRequest, 503: Unavailable}


def chunk_error(chunk: dict[str, Any]) -> XRServeError:
    """The exception an "error" chunk stands for, with its status."""
    cls = _ERRORS.get(int(chunk.get("status", 500)), ModelFailed)
    return cls(str(chunk.get("message", "the model failed")))


class Stream:
    """Chunks of one stream, in order. Iterate it; `cancel()` stops the model's work at once.

    An "error" chunk is raised as the matching `XRServeError`; iteration ends after "done".
    """

    def __init__(self, stream_id: int, cancel: Callable[[int], None], on_close: Callable[[], None]) -> None:
        self.id = stream_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._cancel = cancel
        self._on_close = on_close
        self.closed = False
        self.version = ""
        self.observe_first: Callable[[], None] | None = None  # set by the scheduler: time to first output
        self.observe_done: Callable[[dict[str, Any]], None] | None = None

    def deliver(self, chunk: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(chunk)

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        chunk = await self.queue.get()
        if chunk.get("kind") == "delta" and self.observe_first is not None:
            self.observe_first()
            self.observe_first = None
        elif chunk.get("kind") == "done" and self.observe_done is not None:
            self.observe_done(chunk)
        if chunk.get("kind") in TERMINAL:
            self._close()
            if chunk["kind"] == "error":
                raise chunk_error(chunk)
        return chunk

    async def first(self) -> dict[str, Any]:
        """The first chunk ("started"): an error before any output surfaces here, as an HTTP status."""
        return await self.__anext__()

    def cancel(self) -> None:
        """The client went away: free the model's resources for this stream now."""
        if not self.closed:
            self._cancel(self.id)
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close()
