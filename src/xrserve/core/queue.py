"""A bounded, deadline-ordered queue of pending requests for one model version.

Order: interactive before bulk, then earliest deadline first (requests with no
deadline get a soft one, `SOFT_DEADLINE_S` after arrival, so they are not starved).
A request whose deadline passes while it waits is answered at that moment with
`DeadlineExceeded` by a timer, not when it reaches the head: an XR client learns
at once that the frame was dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from xrserve.core.errors import DeadlineExceeded, Unavailable
from xrserve.core.request import InferenceRequest

SOFT_DEADLINE_S = 10.0


@dataclass(slots=True, eq=False)
class Pending:
    request: InferenceRequest
    future: asyncio.Future
    batch_size: int
    signature: Any
    interactive: bool
    parameters: dict = field(default_factory=dict)  # what reaches Model.infer (control keys removed)
    done: bool = False
    timer: asyncio.TimerHandle | None = field(default=None)

    def finish(self, result: Any = None, error: BaseException | None = None) -> bool:
        """Resolve the waiting caller once; False if it was already resolved."""
        if self.done:
            return False
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        return True


class RequestQueue:
    def __init__(self, capacity: int, on_expired: Callable[[Pending], None]) -> None:
        self.capacity = capacity
        self._heap: list[tuple[int, float, int, Pending]] = []
        self._live = 0
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._on_expired = on_expired

    def __len__(self) -> int:
        return self._live

    def put(self, item: Pending, retry_after_s: float) -> None:
        if self._live >= self.capacity:
            raise Unavailable(
                f"model '{item.request.model}' has {self._live} requests queued, its limit "
                f"(queue_size in model.toml); retry after the Retry-After interval",
                retry_after_s=retry_after_s,
            )
        request = item.request
        order = request.deadline if request.deadline is not None else request.arrival + SOFT_DEADLINE_S
        heapq.heappush(self._heap, (0 if item.interactive else 1, order, next(self._seq), item))
        self._live += 1
        if request.deadline is not None:
            loop = asyncio.get_running_loop()
            delay = request.deadline - time.monotonic()
            item.timer = loop.call_at(loop.time() + delay, self._expire, item)
        self._wakeup.set()

    @staticmethod
    def _taken(item: Pending) -> Pending:
        """Out of the queue: from here the batch that holds it watches its deadline."""
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        return item

    def _expire(self, item: Pending) -> None:
        item.timer = None
        if not item.done:
            self._live -= 1
            waited_ms = (time.monotonic() - item.request.arrival) * 1000
            item.finish(error=DeadlineExceeded(
                f"deadline exceeded: the request to '{item.request.model}' waited {waited_ms:.1f} ms in the queue "
                f"and its deadline passed before it could run, so it was not computed"
            ))
            self._on_expired(item)

    def _drop_dead_head(self) -> None:
        while self._heap and (self._heap[0][3].done or self._heap[0][3].future.cancelled()):
            item = heapq.heappop(self._heap)[3]
            if not item.done:  # cancelled by its caller (client went away)
                item.done = True
                self._live -= 1
                if item.timer is not None:
                    item.timer.cancel()

    async def take_first(self) -> Pending:
        """Wait for the most urgent live request and remove it."""
        while True:
            self._drop_dead_head()
            if self._heap:
                item = heapq.heappop(self._heap)[3]
                self._live -= 1
                return self._taken(item)
            self._wakeup.clear()
            await self._wakeup.wait()

    def take_compatible(self, first: Pending, room: int) -> list[Pending]:
        """Remove queued requests that can share `first`'s batch, most urgent first, up to `room` rows."""
        taken: list[Pending] = []
        keep: list[tuple[int, float, int, Pending]] = []
        if not self._heap or room <= 0:
            return taken
        for entry in sorted(self._heap):
            item = entry[3]
            if item.done or item.future.cancelled():
                if not item.done:
                    item.done = True
                    self._live -= 1
                continue
            if item.signature == first.signature and item.batch_size <= room:
                taken.append(self._taken(item))
                room -= item.batch_size
                self._live -= 1
            else:
                keep.append(entry)
        self._heap = keep  # a sorted list is a valid heap
        return taken

    async def wait_for_more(self, timeout: float) -> None:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

    def fail_all(self, error: Exception) -> None:
        for _, _, _, item in self._heap:
            if item.finish(error=error):
                self._live -= 1
        self._heap.clear()
