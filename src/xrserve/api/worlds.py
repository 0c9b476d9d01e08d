"""Generated worlds over REST: scene jobs, their results, the scenes and their edits.

A thin transport over `worlds.jobs.WorldStore`: it checks the key (scope `worlds` or
`*`), validates the body, and answers the store's state as JSON or the GLB as
`model/gltf-binary`. `POST /v1/terrain` lives in `api.worlds_terrain` (it answers at
once; scenes are jobs).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from xrserve.api.openai_protocol import OPENAI_ERRORS
from xrserve.api.worlds_terrain import require_worlds
from xrserve.security.guard import KeyFirstRoute
from xrserve.security.keys import ApiKey
from xrserve.worlds.extraction import parse_prompt
from xrserve.worlds.jobs import WorldStore
from xrserve.worlds.scene import MAX_PROMPT_CHARS, check_counts, check_edit, check_prompt

GLB = "model/gltf-binary"
GLB_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the scene as one GLB file",
        "content": {GLB: {"schema": {"type": "string", "format": "binary"}}},
    }
}

router = APIRouter(tags=["Worlds"], responses=OPENAI_ERRORS, route_class=KeyFirstRoute)
Owner = Annotated[ApiKey, Depends(require_worlds)]  # checked before the body: a stranger gets 401, not 400


class SceneBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as written: no false for 0
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="the scene in words")
    seed: StrictInt = Field(
        0, ge=0, lt=2**32, description="terrain and layout; the same prompt and seed give the same GLB"
    )
    extractor: str = Field(
        "parser",
        pattern="^(parser|llm)$",
        description="who reads the prompt: the deterministic parser (default, measured best) or the LLM",
    )


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as written: no false for 0
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="e.g. 'add two lamps next to the tent'")


def _store(request: Request) -> WorldStore:
    return request.app.state.worlds


@router.post("/v1/scenes", status_code=202, summary="Start generating a scene from a prompt (a job)")
async def create_scene(request: Request, body: SceneBody, key: Owner) -> JSONResponse:
    prompt = check_prompt(body.prompt)
    if body.extractor == "parser":
        check_counts(parse_prompt(prompt).objects)  # too many objects is a 400 now, not a failed job later
    job = _store(request).create(key.id, prompt, body.seed, body.extractor)
    return JSONResponse(_accepted(job.as_json()), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.post("/v1/scenes/{scene_id}/edit", status_code=202, summary="Change a scene by prompt (a job)")
async def edit_scene(request: Request, scene_id: str, body: EditBody, key: Owner) -> JSONResponse:
    prompt = check_prompt(body.prompt)
    check_edit(prompt)
    job = _store(request).edit(key.id, scene_id, prompt)
    return JSONResponse(_accepted(job.as_json()), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


# one route for both methods: an OPTIONS or a wrong method then gets `Allow: GET, DELETE`, not half of it
@router.api_route(
    "/v1/jobs/{job_id}",
    methods=["GET", "DELETE"],
    summary="A job's status, stage and progress (GET); cancel it (DELETE), which answers the same",
)
async def job(request: Request, job_id: str, key: Owner) -> dict[str, Any]:
    store = _store(request)
    if request.method == "DELETE":
        return store.cancel(key.id, job_id).as_json()
    return store.job(key.id, job_id).as_json()


@router.get(
    "/v1/jobs/{job_id}/result",
    summary="The GLB a job made (409 while it is not finished)",
    response_class=FileResponse,
    responses=GLB_RESPONSE,
)
async def job_result(request: Request, job_id: str, key: Owner) -> FileResponse:
    return FileResponse(_store(request).result(key.id, job_id), media_type=GLB)


@router.get("/v1/scenes/{scene_id}", summary="The scene graph: objects, transforms, labels, unmatched words, spawn")
async def get_scene(request: Request, scene_id: str, key: Owner) -> dict[str, Any]:
    return _store(request).scene_graph(key.id, scene_id)


@router.get(
    "/v1/scenes/{scene_id}/glb", summary="The scene's latest GLB", response_class=FileResponse, responses=GLB_RESPONSE
)
async def get_scene_glb(request: Request, scene_id: str, key: Owner) -> FileResponse:
    return FileResponse(_store(request).scene_glb(key.id, scene_id), media_type=GLB)


def _accepted(job: dict[str, Any]) -> dict[str, Any]:
    return {"id": job["id"], "scene_id": job["scene_id"], "status": job["status"], "job_url": f"/v1/jobs/{job['id']}"}
