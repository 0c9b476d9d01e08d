"""A bounded, deadline-ordered queue of pending requests for one model version.

Order: by priority class (camera frames, first speech, interactive, bulk), then
earliest deadline first (requests with no
deadline get a soft one, `SOFT_DEADLINE_S` after arrival, so they are not starved).
A request whose deadline passes while it waits is answered at that moment with
`DeadlineExceeded` by a timer, not when it reaches the head: an XR client learns
at once that the frame was dropped.

Camera frames (requests with a `frame_key`) under the default `deadline` frame policy
also get:
- latest-frame-wins: queuing a frame finishes the waiting frame with the same key as
  `Superseded`, so a stream never has more than one frame waiting per model;
- fairness: when the most urgent request is a frame, the frame taken is the one whose
  session was served least recently among the frames of equal urgency (deadlines
  within `FAIR_WINDOW_S` of the most urgent): round-robin between sessions, so one
  session's frames cannot crowd out another's when the model is overloaded.
With the `fifo` policy frames are plain requests (the scheduler also drops their
deadlines), for comparison.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xrserve.core.errors import DeadlineExceeded, Superseded, Unavailable
from xrserve.core.request import InferenceRequest, Priority

SOFT_DEADLINE_S = 10.0
FAIR_WINDOW_S = 0.05  # frames whose deadlines are this close to the most urgent one count as equally urgent
MAX_SESSIONS_REMEMBERED = 4096
FRAME_POLICIES = ("deadline", "fifo")


@dataclass(slots=True, eq=False)
class Pending:
    request: InferenceRequest
    future: asyncio.Future[Any]  # an InferenceResponse, or a Stream for a streaming model
    batch_size: int
    signature: Any
    priority: Priority
    parameters: dict[str, Any] = field(default_factory=dict)  # what reaches Model.infer (control keys removed)
    done: bool = False
    queued: bool = False  # in the queue (not yet taken into a batch)
    timer: asyncio.TimerHandle | None = field(default=None)

    @property
    def interactive(self) -> bool:
        return self.priority.interactive

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
    def __init__(
        self,
        capacity: int,
        on_expired: Callable[[Pending], None],
        *,
        frame_policy: str = "deadline",
        on_superseded: Callable[[Pending], None] = lambda pending: None,
        on_left: Callable[[Pending], None] = lambda pending: None,
    ) -> None:
        if frame_policy not in FRAME_POLICIES:
            raise ValueError(f"frame policy '{frame_policy}' is not one of {FRAME_POLICIES}")
        self.capacity = capacity
        self.frame_aware = frame_policy == "deadline"
        self._frames: dict[str, Pending] = {}  # frame_key -> its one waiting frame
        self._served: dict[str | None, float] = {}  # session -> when one of its frames was last taken
        self._on_superseded = on_superseded
        self._on_left = on_left
        self._heap: list[tuple[int, float, int, Pending]] = []
        self._live = 0
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._on_expired = on_expired

    def __len__(self) -> int:
        return self._live

    def put(self, item: Pending, retry_after_s: float) -> None:
        key = item.request.frame_key if self.frame_aware else None
        if key is not None:
            older = self._frames.get(key)
            if older is not None and not older.done:
                self._live -= 1  # its heap entry is dropped lazily, like an expired one
                older.finish(
                    error=Superseded(
                        f"frame superseded: a newer frame of the same stream arrived before this one reached "
                        f"'{older.request.model}', so it was skipped (latest-frame-wins)"
                    )
                )
                self._on_superseded(older)
        if self._live >= self.capacity:
            raise Unavailable(
                f"model '{item.request.model}' has {self._live} requests queued, its limit "
                f"(queue_size in model.toml); retry after the Retry-After interval",
                retry_after_s=retry_after_s,
            )
        if key is not None:
            self._frames[key] = item
        request = item.request
        order = request.deadline if request.deadline is not None else request.arrival + SOFT_DEADLINE_S
        heapq.heappush(self._heap, (int(item.priority), order, next(self._seq), item))
        self._live += 1
        item.queued = True
        item.future.add_done_callback(functools.partial(self._left, item))
        if request.deadline is not None:
            loop = asyncio.get_running_loop()
            delay = request.deadline - time.monotonic()
            item.timer = loop.call_at(loop.time() + delay, self._expire, item)
        self._wakeup.set()

    def _left(self, item: Pending, future: asyncio.Future[Any]) -> None:
        """The caller went away (its task was cancelled) while the request waited: it leaves the queue now.

        Its heap entry is dropped lazily; the count, the frame slot and the timer go at once, so the
        queue's length (and its metric) says what will really be computed.
        """
        if future.cancelled() and item.queued and not item.done:
            item.done, item.queued = True, False
            self._live -= 1
            if item.timer is not None:
                item.timer.cancel()
            self._forget_frame(item)
            self._on_left(item)

    def _taken(self, item: Pending) -> Pending:
        """Out of the queue: from here the batch that holds it watches its deadline."""
        item.queued = False
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        if item.request.frame_key is not None and self.frame_aware:
            self._forget_frame(item)
            if len(self._served) >= MAX_SESSIONS_REMEMBERED:
                self._served.clear()  # forgetting only resets the round-robin order
            self._served[item.request.session] = time.monotonic()
        return item

    def _fair_pick(self) -> Pending:
        """The head is a frame: take the equally urgent frame of the least recently served session."""
        head_class, head_order = self._heap[0][0], self._heap[0][1]
        horizon = head_order + FAIR_WINDOW_S
        best, best_rank = 0, None
        for index, (klass, order, _, item) in enumerate(self._heap):
            if klass != head_class or order > horizon or item.done or item.request.frame_key is None:
                continue
            rank = (self._served.get(item.request.session, float("-inf")), order)
            if best_rank is None or rank < best_rank:
                best, best_rank = index, rank
        entry = self._heap[best]
        last = self._heap.pop()
        if best < len(self._heap):
            self._heap[best] = last
            heapq.heapify(self._heap)
        return entry[3]

    def _forget_frame(self, item: Pending) -> None:
        key = item.request.frame_key
        if key is not None and self._frames.get(key) is item:
            del self._frames[key]

    def _expire(self, item: Pending) -> None:
        item.timer = None
        self._forget_frame(item)
        if not item.done:
            self._live -= 1
            waited_ms = (time.monotonic() - item.request.arrival) * 1000
            item.finish(
                error=DeadlineExceeded(
                    f"deadline exceeded: the request to '{item.request.model}' waited {waited_ms:.1f} ms in the queue "
                    f"and its deadline passed before it could run, so it was not computed"
                )
            )
            self._on_expired(item)

    def _drop_dead_head(self) -> None:
        while self._heap and (self._heap[0][3].done or self._heap[0][3].future.cancelled()):
            item = heapq.heappop(self._heap)[3]
            self._forget_frame(item)
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
                if self.frame_aware and self._heap[0][3].request.frame_key is not None:
                    item = self._fair_pick()
                else:
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
        self._frames.clear()
