"""The `jobs` stream kind: a scene job's progress pushed over the session instead of polled.

A headset that asked for a world keeps its one socket; opening `jobs` with the job id
gets `progress` messages as the job moves through its stages, then `done` with the
result URL (or an `error` with the job's message when it failed or was cancelled).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from xrserve.session.streams import SessionStream, StreamOptions, stream_kind
from xrserve.worlds import SCOPE
from xrserve.worlds.jobs import Job, WorldStore


class JobsOptions(StreamOptions):
    job: str = Field(min_length=1, max_length=64, description="the id `POST /v1/scenes` answered")


@stream_kind("jobs")
class JobStream(SessionStream):
    """Open with `{"type": "open", "stream": "j", "kind": "jobs", "job": "job_..."}`."""

    Options = JobsOptions
    options: JobsOptions

    async def open(self) -> dict[str, Any]:
        self.session.authorize(SCOPE)
        store: WorldStore = self.session.app_state.worlds
        job = store.job(self.session.key.id, self.options.job)  # 404 for an unknown job or another key's
        self.spawn(self._follow(store, job))
        return {"job": job.id, "scene_id": job.scene_id}

    async def _follow(self, store: WorldStore, job: Job) -> None:
        await asyncio.sleep(0)  # after the `opened` message
        async for state in store.events(job):
            if state["status"] == "succeeded":
                await self.send("done", **state)
            elif state["status"] in ("failed", "cancelled"):
                await self.send("failed", **state)
            else:
                await self.send("progress", **state)
