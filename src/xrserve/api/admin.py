"""Operator routes: the repository (Triton's model-repository extension) and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from xrserve.api.oip_schema import ERRORS, ModelName, RepositoryEntry
from xrserve.core.errors import NotFound
from xrserve.core.loader import reload_model
from xrserve.security.guard import require_admin

router = APIRouter(tags=["Administration"], responses=ERRORS)


@router.post("/v2/repository/index", response_model=list[RepositoryEntry], dependencies=[Depends(require_admin)],
             summary="Every model version with its state, and why those that did not load did not")
async def repository_index(request: Request) -> list[RepositoryEntry]:
    scheduler = request.app.state.scheduler
    entries = [
        RepositoryEntry(name=v.name, version=v.version, state=v.state, reason=v.reason)
        for v in sorted(scheduler.all_versions(), key=lambda v: (v.name, int(v.version)))
    ]
    for name, reasons in sorted(request.app.state.repository.problems.items()):
        entries.extend(RepositoryEntry(name=name, state="UNAVAILABLE", reason=r) for r in reasons)
    return entries


@router.post("/v2/repository/models/{model_name}/load", response_model=list[RepositoryEntry],
             dependencies=[Depends(require_admin)], summary="Load new versions of a model from the repository")
async def load_model(request: Request, model_name: ModelName) -> list[RepositoryEntry]:
    state = request.app.state
    await reload_model(state.scheduler, state.settings, state.repository, model_name)
    versions = state.scheduler.models.get(model_name, {})
    problems = state.repository.problems.get(model_name, [])
    if not versions and not problems:
        raise NotFound(f"the repository has no model '{model_name}'")
    entries = [RepositoryEntry(name=model_name, version=v.version, state=v.state, reason=v.reason)
               for v in versions.values()]
    return entries + [RepositoryEntry(name=model_name, state="UNAVAILABLE", reason=r) for r in problems]


@router.post("/v2/repository/models/{model_name}/unload", dependencies=[Depends(require_admin)],
             summary="Stop serving every version of a model")
async def unload_model(request: Request, model_name: ModelName) -> dict[str, str]:
    scheduler = request.app.state.scheduler
    scheduler.resolve(model_name)
    await scheduler.unload(model_name)
    return {"name": model_name, "state": "UNLOADED"}


@router.get("/metrics", tags=["Observability"], summary="Prometheus metrics (text format)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.scheduler.metrics.render(), media_type=CONTENT_TYPE_LATEST)
