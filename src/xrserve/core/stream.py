"""One open stream of a streaming model, as the scheduler hands it to a transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from xrserve.core.errors import XRServeError, error_for
from xrserve.core.request import Usage

TERMINAL = ("done", "error")
#: After `cancel()`, the slot is held until the model confirms with its terminal chunk (the
#: engine frees its sequence on its next step), or at most this long if that chunk never comes.
CANCEL_RELEASE_TIMEOUT_S = 2.0


def chunk_error(chunk: dict[str, Any]) -> XRServeError:
    """The exception an "error" chunk stands for, with its status."""
    return error_for(int(chunk.get("status", 500)), str(chunk.get("message", "the model failed")))


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
        self._released = False
        self._draining = False  # cancelled: waiting for the model's terminal chunk to free the slot
        self.version = ""
        self.usage = Usage()  # filled in from the model's "done" chunk
        self._opened = time.monotonic()
        self.observe_first: Callable[[], None] | None = None  # set by the scheduler: time to first output
        self.observe_done: Callable[[dict[str, Any]], None] | None = None

    def deliver(self, chunk: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(chunk)
        elif self._draining and chunk.get("kind") in TERMINAL:
            if chunk["kind"] == "done" and self.observe_done is not None:
                self.observe_done(chunk)  # what was generated before the cancel counts: nobody reads this chunk
            self._release()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        chunk = await self.queue.get()
        if chunk.get("kind") == "delta" and self.observe_first is not None:
            self.observe_first()
            self.observe_first = None
        elif chunk.get("kind") == "done":
            self.usage = Usage(
                int(chunk.get("prompt_tokens", 0)),
                int(chunk.get("completion_tokens", 0)),
                time.monotonic() - self._opened,
            )
            if self.observe_done is not None:
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
        """The client went away: stop the model's work now; the slot frees when the model confirms.

        Releasing the scheduler's slot at once would let a new stream in while the model still
        holds the old one (llama.cpp frees a sequence on its next step), and that stream would be
        refused for want of a slot: a barge-in does exactly this. So the slot is released when the
        cancelled stream's terminal chunk arrives, or after `CANCEL_RELEASE_TIMEOUT_S`.
        """
        if self.closed:
            return
        self._cancel(self.id)
        self.closed = True
        self._draining = True
        try:
            asyncio.get_running_loop().call_later(CANCEL_RELEASE_TIMEOUT_S, self._release)
        except RuntimeError:  # no loop (interpreter shutting down): nothing will deliver, free it now
            self._release()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._on_close()
