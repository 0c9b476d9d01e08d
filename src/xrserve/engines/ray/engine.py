"""`RayEngine`: the `InferenceClient` whose model versions compute in Ray Serve replicas.

It is core's `Scheduler` with another kind of version: everything the front decides stays
here and works as in the embedded engine (which version a request means, canaries and their
rollback, promoted versions, admission checks that answer 400 before anything travels, the
admin API, unload with drain). What a version does with an admitted request changes: instead
of queuing it for a local instance it sends it to the version's Serve application, where the
replica's own scheduler batches it and honours its deadline (`replica.py`).

Latest-frame-wins across replicas: a camera stream has at most one frame at a replica per
model; a newer frame waits at the front, and a still newer one supersedes it there. Without
this, Serve could spread one stream's frames over replicas that never see each other's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from xrserve.core.capabilities import Capabilities
from xrserve.core.config import ModelConfig
from xrserve.core.errors import DeadlineExceeded, Superseded, Unavailable, XRServeError
from xrserve.core.metrics import replica_series
from xrserve.core.queue import Pending
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import UNLOAD_DRAIN_S, ModelVersion, Scheduler
from xrserve.core.stream import Stream
from xrserve.engines.ray import cluster
from xrserve.engines.ray.wire import WireRequest, error_chunk, unpack

log = logging.getLogger("xrserve.ray")
_stream_ids = itertools.count(1)
#: how long after a request's deadline the front stops waiting for its replica. The replica itself answers
#: 408 to what it could not start in time, and finishes what it started before the deadline (as the
#: embedded engine does), so this only bounds the wait while Serve replaces a dead replica (seconds)
DEADLINE_GRACE_S = 1.0
#: a replica that has not reported for this long is shown as lost (it reports every 2 s)
LOST_AFTER_S = 6.0


@dataclass(slots=True)
class _FrameSlot:
    """One camera stream's frames for one model: the one at a replica, and the one waiting for it."""

    waiting: Pending | None = None


class RemoteModelVersion(ModelVersion):
    scheduler: RayEngine

    def __init__(self, config: ModelConfig, scheduler: Scheduler) -> None:
        super().__init__(config, scheduler)
        self.handle: Any = None  # the Serve application's handle, once deployed
        self._frames: dict[str, _FrameSlot] = {}
        self._tasks_running: set[asyncio.Task[None]] = set()

    def _make_runners(self) -> list[Any]:
        return []  # its instances are the Serve replicas

    async def load(self) -> None:
        try:
            self.handle = await asyncio.to_thread(cluster.deploy, self.config, self.scheduler.frame_policy)
            report = await self.handle.describe.remote()
        except Exception as exc:
            self.state, self.reason = "UNAVAILABLE", f"failed to load: {replica_problem(exc)}"
            raise RuntimeError(self.reason) from exc
        self.config = ModelConfig.model_validate_json(report["config"])
        self.capabilities = Capabilities.of(self.config, self._builtin_class)
        self.state = "READY"

    async def unload(self, drain_s: float = UNLOAD_DRAIN_S) -> None:
        self.state, self.reason = "UNLOADING", "draining before it is unloaded"
        deadline = time.monotonic() + drain_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.state, self.reason = "UNAVAILABLE", "unloaded"
        gone = self._unloaded()
        for slot in self._frames.values():
            if slot.waiting is not None:
                slot.waiting.finish(error=gone)
        for task in list(self._tasks_running):
            task.cancel()
        if not self.scheduler.closing:  # unloaded by the admin API: its application goes too
            await asyncio.to_thread(cluster.delete, self.name, self.version)

    # -- requests ------------------------------------------------------------------------

    def admit(self, request: InferenceRequest) -> Pending:
        pending = self.prepare(request)  # 400s here, before the hop
        self._m_requests.inc()
        key = request.frame_key
        if key is not None and self.queue.frame_aware:
            slot = self._frames.get(key)
            if slot is not None:  # this stream has a frame at a replica: wait for it, replacing any waiting
                if slot.waiting is not None:
                    slot.waiting.finish(
                        error=Superseded(
                            f"frame superseded: a newer frame of the same stream arrived before this one reached "
                            f"'{self.name}', so it was skipped (latest-frame-wins)"
                        )
                    )
                    self._superseded(slot.waiting)
                slot.waiting = pending
                return pending
            self._frames[key] = _FrameSlot()
        self._send(pending)
        return pending

    def _send(self, pending: Pending) -> None:
        task = asyncio.create_task(self._call(pending))
        self._tasks_running.add(task)
        task.add_done_callback(self._tasks_running.discard)
        pending.future.add_done_callback(lambda future: task.cancel() if future.cancelled() else None)

    async def _call(self, pending: Pending) -> None:
        request = pending.request
        self._in_flight += 1
        try:
            if request.deadline is not None and request.deadline <= time.monotonic():
                self._expired(pending)
                pending.finish(error=DeadlineExceeded(f"deadline exceeded before the request reached '{self.name}'"))
            elif self.config.streaming:
                stream = self._open_stream(pending)
                if not pending.finish(stream) or pending.future.cancelled():
                    stream.cancel()  # the caller left meanwhile
            else:
                await self._infer(pending)
        except asyncio.CancelledError:  # the caller left (nothing to answer), or the version was unloaded
            pending.finish(error=self._unloaded())
            raise
        finally:
            self._in_flight -= 1
            if request.frame_key is not None:
                self._next_frame(request.frame_key)

    async def _infer(self, pending: Pending) -> None:
        started = time.monotonic()
        request = pending.request
        response = self.handle.submit.remote(WireRequest.of(request))
        try:
            # a request with a deadline waits no longer than that, also while Serve replaces a dead replica
            budget = None if request.deadline is None else request.deadline - started + DEADLINE_GRACE_S
            answer = await asyncio.wait_for(_result(response), budget)
        except asyncio.CancelledError:
            response.cancel()  # the client left: the replica drops it (queued) or abandons it
            raise
        except TimeoutError:
            response.cancel()
            self._expired(pending)
            pending.finish(
                error=DeadlineExceeded(
                    f"deadline exceeded: no replica of '{self.name}' answered before the request's deadline"
                )
            )
            return
        except Exception as exc:  # noqa: BLE001 - the replica died, Serve refused, the cluster went away
            self.scheduler.metrics.failures.labels(self.name, self.version, "crash").inc()
            pending.finish(error=Unavailable(self._lost(exc)))
            return
        try:
            pending.finish(unpack(answer))
        except XRServeError as exc:
            pending.finish(error=exc)
        self._m_latency.observe(time.monotonic() - started)

    def _open_stream(self, pending: Pending) -> Stream:
        calls = self.handle.options(stream=True)
        generator = calls.stream.remote(WireRequest.of(pending.request))
        self._open_streams += 1

        def closed() -> None:
            self._open_streams -= 1

        stream = Stream(next(_stream_ids), lambda _id: generator.cancel(), closed)
        stream.version = self.version

        async def pump() -> None:
            try:
                async for chunk in generator:
                    stream.deliver(chunk)
            except asyncio.CancelledError:  # the version was unloaded under it
                generator.cancel()
                stream.deliver(error_chunk(self._unloaded()))
                raise
            except Exception as exc:  # noqa: BLE001 - cancelled by the client, or the replica died
                stream.deliver(error_chunk(Unavailable(self._lost(exc))))

        task = asyncio.create_task(pump())
        self._tasks_running.add(task)
        task.add_done_callback(self._tasks_running.discard)
        return stream

    def _next_frame(self, key: str) -> None:
        slot = self._frames.get(key)
        if slot is None:
            return
        waiting, slot.waiting = slot.waiting, None
        if waiting is None or waiting.done or waiting.future.done():
            del self._frames[key]
        else:
            self._send(waiting)

    def _unloaded(self) -> Unavailable:
        return Unavailable.unloaded(self.name, self.version)

    def _lost(self, exc: BaseException) -> str:
        return (
            f"model '{self.name}' version {self.version}: its Ray Serve replica could not answer "
            f"({replica_problem(exc)}); Serve replaces a replica that died, retry in a moment"
        )


async def _result(response: Any) -> Any:
    return await response


def replica_problem(exc: BaseException) -> str:
    """The first line of what Ray says, without its traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class RayEngine(Scheduler):
    """The scheduler of the front: versions live as Serve applications (`RemoteModelVersion`)."""

    version_class = RemoteModelVersion

    def __init__(self, *args: Any, address: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        self.started_here = False
        #: shutting down: a Ray this front started goes away whole; on a cluster it joined, the
        #: applications stay for the other fronts (see cluster.disconnect)
        self.closing = False

    async def start(self) -> None:
        self.started_here = await asyncio.to_thread(cluster.connect, self.address)

    async def close(self) -> None:
        self.closing = True
        await super().close()
        await asyncio.to_thread(cluster.disconnect, self.started_here)

    async def replicas(self) -> list[dict[str, Any]]:
        """What every replica last reported (model, version, state, pid, node, series), newest first."""
        from xrserve.engines.ray.board import board  # imports ray: only once connect() has set its environment

        reports: list[dict[str, Any]] = await board().read.remote()
        for report in reports:
            if report["age_s"] > LOST_AFTER_S:
                report["state"], report["reason"] = "LOST", f"no report for {report['age_s']:.0f} s"
        return sorted(reports, key=lambda r: (r["model"], r["version"], r["replica"]))

    async def replica_metrics(self) -> bytes:
        return replica_series({r["replica"]: r["metrics"] for r in await self.replicas()})

    async def engine_status(self) -> dict[str, Any]:
        """For `xrserve ray status`: applications with their replica counts, and each replica."""
        applications = await asyncio.to_thread(cluster.deployment_status)
        replicas = [{k: v for k, v in r.items() if k != "metrics"} for r in await self.replicas()]
        return {
            "engine": "ray",
            "address": cluster.gcs_address(),  # what another front passes as --ray-address
            "started_here": self.started_here,
            "applications": applications,
            "replicas": replicas,
        }
