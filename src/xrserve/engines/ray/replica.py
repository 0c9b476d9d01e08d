"""A Serve replica: one model version behind a scheduler of its own.

The replica does what the embedded engine does for that version: a deadline-ordered queue,
batches gathered by the same rules (`max_batch_size`, `max_queue_delay_ms`, never past the
earliest deadline), nothing computed after its deadline, latest-frame-wins and fairness between
sessions for camera frames, stream slots. So Serve's router hands each request straight in (its
`max_ongoing_requests` is the queue's size, not Serve's default of 5), and the scheduling
happens here, where the model is.

The model computes in this process, on a thread of its own (whatever `isolation` says): the
replica's process is the boundary a crash takes down, and Serve restarts it; a worker process
inside it would only add a hop, and computing on the replica's event loop ("inline") would hold
up Serve's health probes and the queue's deadline timers while the model runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from xrserve.core.config import ModelConfig
from xrserve.core.errors import Unavailable, XRServeError
from xrserve.core.metrics import Metrics
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import Scheduler
from xrserve.engines.ray.board import board, report_forever
from xrserve.engines.ray.wire import Answer, WireRequest, error_answer, error_chunk
from xrserve.runtimes import RUNTIMES


class ModelReplica:
    """The deployment class (`cluster.py` wraps it with `serve.deployment` and the model's [scaling])."""

    async def __init__(self, config_json: str, frame_policy: str) -> None:  # type: ignore[misc]  # Serve awaits it
        config = ModelConfig.model_validate_json(config_json)
        if config.isolation != "thread":  # not "inline" either: a blocked loop would hold Serve's probes and
            config = config.model_copy(update={"isolation": "thread"})  # the queue's deadline timers
        self.scheduler = Scheduler(RUNTIMES, Metrics(), frame_policy=frame_policy)
        self.model = await self.scheduler.load(config)
        self._hop = self.scheduler.metrics.hop_time.labels(config.name, config.version)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self._reporting = asyncio.create_task(report_forever(self.replica, self.report))

    def describe(self) -> dict[str, Any]:
        """What the front asks once, at load: the loaded config (a runtime may fill in what the file left out)."""
        return {**self.report(), "config": self.model.config.model_dump_json()}

    def report(self) -> dict[str, Any]:
        """What goes to the board every 2 s: who this replica is, its state and its series."""
        return {
            "replica": self.replica,
            "model": self.model.name,
            "version": self.model.version,
            "state": self.model.state,
            "reason": self.model.reason,
            "node": os.uname().nodename,
            "pid": os.getpid(),
            "metrics": self.scheduler.metrics.render().decode(),
        }

    async def submit(self, wire: WireRequest) -> Answer:
        metrics = self.scheduler.metrics
        metrics.in_server += 1  # a forming batch waits for company only while company is here
        try:
            return ("ok", await self.scheduler.submit(self._received(wire)))
        except XRServeError as exc:
            return error_answer(exc)
        finally:
            metrics.in_server -= 1

    async def stream(self, wire: WireRequest) -> AsyncIterator[dict[str, Any]]:
        """The model's chunks as they come; a cancelled call (the client left) stops the model."""
        try:
            stream = await self.scheduler.stream(self._received(wire))
        except XRServeError as exc:
            yield error_chunk(exc)
            return
        try:
            async for chunk in stream:
                yield chunk
        except XRServeError as exc:
            yield error_chunk(exc)
        finally:
            stream.cancel()

    def _received(self, wire: WireRequest) -> InferenceRequest:
        request, hop = wire.local()
        self._hop.observe(hop)
        return request

    async def __del__(self) -> None:
        """Serve's graceful stop (an unload, a scale-down): leave the board and stop the model."""
        self._reporting.cancel()
        with contextlib.suppress(Exception):
            await board().leave.remote(self.replica)
        await self.scheduler.close()

    async def check_health(self) -> None:
        """Serve's periodic probe: a replica whose model cannot run any more is replaced."""
        if not self.model.ready:
            raise Unavailable(f"model '{self.model.name}' is {self.model.state}: {self.model.reason}")
