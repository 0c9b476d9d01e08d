"""Scene jobs and the scenes they make, owned by the key that asked, kept on disk for a while.

Generation is a job (202 and poll, as content-generation services do) rather than one
long request: a headset app asks, shows progress, and fetches the GLB when it is done,
and a dropped connection loses nothing. Jobs run one at a time in arrival order: they
share two cores with camera frames and voices, and their model calls are bulk
priority anyway, so running two at once would only make both later.

On disk (`<data dir>/worlds`): `jobs/<id>.json`, and per scene `scenes/<id>/` with
`meta.json` (owner, times), `rev<N>.glb` and `rev<N>.json` (the scene graph) and
`heights.npy` (the latest terrain, pads included, which an edit builds on). Anything
older than the time to keep (default 24 h) is deleted. A key sees only its own jobs
and scenes; another key's id is a 404, exactly as an id that never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from xrserve.core.errors import NotFound, TooManyRequests, XRServeError
from xrserve.worlds.scene import ScenePipeline, SceneResult

log = logging.getLogger("xrserve.worlds")

DEFAULT_KEEP_S = 24 * 3600.0
MAX_WAITING = 8  # unfinished jobs per key
FINISHED = ("succeeded", "failed", "cancelled")
SCENE_ID = re.compile(r"scn_[0-9a-f]{16}")  # what `create` makes; anything else never touches the disk


class NotFinished(XRServeError):
    status_code = 409


@dataclass
class Job:
    id: str
    owner: str
    scene_id: str
    kind: str  # "create" | "edit"
    prompt: str
    status: str = "queued"
    stage: str = "queued"
    progress: float = 0.0
    error: str | None = None
    revision: int | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    _listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def result_url(self) -> str:
        return f"/v1/jobs/{self.id}/result"

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "scene_id": self.scene_id,
            "kind": self.kind,
            "result_url": self.result_url if self.status == "succeeded" else None,
            "revision": self.revision,
            "created": self.created,
            "finished": self.finished,
        }
        if self.error is not None:
            body["error"] = self.error
        return body

    def record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class WorldStore:
    """Every job and scene of this server; the API routes and the `jobs` stream read it."""

    def __init__(self, root: Path, pipeline: ScenePipeline, keep_s: float = DEFAULT_KEEP_S) -> None:
        self.root = root
        self.pipeline = pipeline
        self.keep_s = keep_s
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        (root / "scenes").mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._turn = asyncio.Lock()  # one job at a time
        self._load()

    # -- submitting ------------------------------------------------------------------------

    def create(self, owner: str, prompt: str, seed: int, extractor: str) -> Job:
        self._admit(owner)
        self.purge()
        scene_id = "scn_" + secrets.token_hex(8)
        folder = self.root / "scenes" / scene_id
        folder.mkdir()
        now = time.time()
        _write_json(folder / "meta.json", {"owner": owner, "created": now, "updated": now, "revision": 0})
        job = self._new_job(owner, scene_id, "create", prompt)
        job._task = asyncio.ensure_future(self._run(job, seed=seed, extractor=extractor))
        return job

    def edit(self, owner: str, scene_id: str, prompt: str) -> Job:
        self._scene_meta(owner, scene_id)  # 404 before a job exists
        self._admit(owner)
        job = self._new_job(owner, scene_id, "edit", prompt)
        job._task = asyncio.ensure_future(self._run(job))
        return job

    def _admit(self, owner: str) -> None:
        """At most MAX_WAITING unfinished jobs per key: one client cannot fill the queue for everyone."""
        waiting = sum(1 for j in self.jobs.values() if j.owner == owner and j.status not in FINISHED)
        if waiting >= MAX_WAITING:
            raise TooManyRequests(
                f"this key has {waiting} scene jobs queued or running; at most {MAX_WAITING}: "
                "wait for one to finish (or cancel one) and ask again",
                retry_after_s=2.0,
            )

    def _new_job(self, owner: str, scene_id: str, kind: str, prompt: str) -> Job:
        job = Job("job_" + secrets.token_hex(8), owner, scene_id, kind, prompt)
        self.jobs[job.id] = job
        self._save(job)
        return job

    # -- reading -----------------------------------------------------------------------------

    def job(self, owner: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound(f"no job '{job_id}' (jobs are kept for {self.keep_s / 3600:g} h, and only for their key)")
        return job

    def cancel(self, owner: str, job_id: str) -> Job:
        job = self.job(owner, job_id)
        if job.status not in FINISHED and job._task is not None:
            job._task.cancel()
            self._finish(job, "cancelled", "cancelled by the client")
        return job

    def result(self, owner: str, job_id: str) -> Path:
        job = self.job(owner, job_id)
        if job.status != "succeeded":
            detail = f": {job.error}" if job.error else f" (stage {job.stage}, {job.progress:.0%})"
            raise NotFinished(f"job '{job_id}' is {job.status}{detail}; its result exists once it has succeeded")
        return self.root / "scenes" / job.scene_id / f"rev{job.revision}.glb"

    def scene_graph(self, owner: str, scene_id: str) -> dict[str, Any]:
        meta = self._scene_meta(owner, scene_id)
        if meta["revision"] == 0:
            raise NotFinished(f"scene '{scene_id}' is still being generated; poll its job")
        return orjson.loads((self.root / "scenes" / scene_id / f"rev{meta['revision']}.json").read_bytes())

    def scene_glb(self, owner: str, scene_id: str) -> Path:
        meta = self._scene_meta(owner, scene_id)
        if meta["revision"] == 0:
            raise NotFinished(f"scene '{scene_id}' is still being generated; poll its job")
        return self.root / "scenes" / scene_id / f"rev{meta['revision']}.glb"

    async def events(self, job: Job) -> AsyncIterator[dict[str, Any]]:
        """The job's state now, then at every change until it has finished (the `jobs` stream)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        job._listeners.add(queue)
        try:
            state = job.as_json()
            yield state
            while state["status"] not in FINISHED:
                state = await queue.get()
                yield state
        finally:
            job._listeners.discard(queue)

    def _scene_meta(self, owner: str, scene_id: str) -> dict[str, Any]:
        path = self.root / "scenes" / scene_id / "meta.json"
        meta = orjson.loads(path.read_bytes()) if SCENE_ID.fullmatch(scene_id) and path.is_file() else None
        if meta is None or meta["owner"] != owner:
            raise NotFound(
                f"no scene '{scene_id}' (scenes are kept for {self.keep_s / 3600:g} h, and only for their key)"
            )
        return meta

    # -- running -------------------------------------------------------------------------------

    async def _run(self, job: Job, seed: int = 0, extractor: str = "parser") -> None:
        try:
            async with self._turn:
                self._update(job, "running", "starting", 0.01)

                async def progress(stage: str, fraction: float) -> None:
                    self._update(job, "running", stage, fraction)

                folder = self.root / "scenes" / job.scene_id
                if job.kind == "create":
                    result = await self.pipeline.create(job.scene_id, job.prompt, seed, extractor, progress, job.owner)
                else:
                    meta = orjson.loads((folder / "meta.json").read_bytes())
                    if meta["revision"] == 0:
                        raise NotFinished(f"scene '{job.scene_id}' has no finished revision to edit")
                    previous = orjson.loads((folder / f"rev{meta['revision']}.json").read_bytes())
                    heights = np.load(folder / "heights.npy")
                    result = await self.pipeline.edit(previous, heights, job.prompt, progress, job.owner)
                await asyncio.to_thread(self._store_revision, job, result)
                self._finish(job, "succeeded")
        except asyncio.CancelledError:
            self._finish(job, "cancelled", "cancelled by the client")
        except XRServeError as error:
            self._finish(job, "failed", error.message)
        except Exception as error:  # noqa: BLE001 - a bug of ours; the job says so, the server lives on
            log.exception("scene job %s failed", job.id)
            self._finish(job, "failed", f"internal error: {type(error).__name__}: {error}")

    def _store_revision(self, job: Job, result: SceneResult) -> None:
        folder = self.root / "scenes" / job.scene_id
        revision = int(result.graph["revision"])
        graph = {**result.graph, "glb_url": f"/v1/scenes/{job.scene_id}/glb"}
        (folder / f"rev{revision}.glb").write_bytes(result.glb)
        _write_json(folder / f"rev{revision}.json", graph)
        np.save(folder / "heights.npy", result.heights)
        meta = orjson.loads((folder / "meta.json").read_bytes())
        meta.update(revision=revision, updated=time.time())
        _write_json(folder / "meta.json", meta)
        job.revision = revision

    def _update(self, job: Job, status: str, stage: str, progress: float) -> None:
        if job.status in FINISHED:
            return
        job.status, job.stage, job.progress = status, stage, progress
        self._notify(job)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        if job.status in FINISHED:
            return
        job.status, job.error, job.finished = status, error, time.time()
        if status == "succeeded":
            job.stage, job.progress = "done", 1.0
        self._save(job)
        self._notify(job)

    def _notify(self, job: Job) -> None:
        state = job.as_json()
        for queue in list(job._listeners):
            queue.put_nowait(state)

    # -- persistence and expiry -------------------------------------------------------------------

    def _save(self, job: Job) -> None:
        _write_json(self.root / "jobs" / f"{job.id}.json", job.record())

    def _load(self) -> None:
        """Jobs of an earlier run: finished ones come back as they were, unfinished ones as failed."""
        for path in sorted((self.root / "jobs").glob("job_*.json")):
            try:
                job = Job(**orjson.loads(path.read_bytes()))
            except (orjson.JSONDecodeError, TypeError):
                continue
            if job.status not in FINISHED:
                job.status, job.error, job.finished = "failed", "the server restarted before the job finished", None
            self.jobs[job.id] = job
        self.purge()

    def purge(self) -> None:
        cutoff = time.time() - self.keep_s
        for job in list(self.jobs.values()):
            if job.status in FINISHED and (job.finished or job.created) < cutoff:
                del self.jobs[job.id]
                with contextlib.suppress(FileNotFoundError):
                    (self.root / "jobs" / f"{job.id}.json").unlink()
        for folder in (self.root / "scenes").glob("scn_*"):
            try:
                meta = orjson.loads((folder / "meta.json").read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            if meta["updated"] < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    async def close(self) -> None:
        tasks = [job._task for job in self.jobs.values() if job._task is not None and not job._task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file, a crash never leaves one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    temporary.replace(path)
