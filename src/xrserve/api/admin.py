"""Operator routes: the repository (Triton's model-repository extension), the audit trail and metrics."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from xrserve.api.oip_schema import ERRORS, ErrorBody, ModelName, RepositoryEntry
from xrserve.api.openai_protocol import OPENAI_ERRORS
from xrserve.core.errors import NotFound, Unavailable, XRServeError
from xrserve.core.loader import reload_model
from xrserve.core.scheduler import ModelVersion, Scheduler
from xrserve.security.audit import tail
from xrserve.security.guard import KeyFirstRoute, require_admin

router = APIRouter(tags=["Administration"], responses=ERRORS, route_class=KeyFirstRoute)


class Conflict(XRServeError):
    """The request is well formed but the repository's state does not allow it now."""

    status_code = 409


@router.post(
    "/v2/repository/index",
    response_model=list[RepositoryEntry],
    dependencies=[Depends(require_admin)],
    summary="Every model version with its state, and why those that did not load did not",
)
async def repository_index(request: Request) -> list[RepositoryEntry]:
    scheduler = request.app.state.scheduler
    entries = [
        RepositoryEntry(name=v.name, version=v.version, state=v.state, reason=v.reason)
        for v in sorted(scheduler.all_versions(), key=lambda v: (v.name, int(v.version)))
    ]
    for name, reasons in sorted(request.app.state.repository.problems.items()):
        entries.extend(RepositoryEntry(name=name, state="UNAVAILABLE", reason=r) for r in reasons)
    return entries


@router.post(
    "/v2/repository/models/{model_name}/load",
    response_model=list[RepositoryEntry],
    dependencies=[Depends(require_admin)],
    summary="Load new versions of a model from the repository",
)
async def load_model(request: Request, model_name: ModelName) -> list[RepositoryEntry]:
    state = request.app.state
    await reload_model(state.scheduler, state.repository_source, state.repository, model_name)
    versions = state.scheduler.models.get(model_name, {})
    problems = state.repository.problems.get(model_name, [])
    if not versions and not problems:
        raise NotFound(f"the repository has no model '{model_name}'")
    entries = [
        RepositoryEntry(name=model_name, version=v.version, state=v.state, reason=v.reason) for v in versions.values()
    ]
    return entries + [RepositoryEntry(name=model_name, state="UNAVAILABLE", reason=r) for r in problems]


@router.post(
    "/v2/repository/models/{model_name}/unload",
    dependencies=[Depends(require_admin)],
    summary="Stop serving every version of a model, once its queued and running requests are answered",
)
async def unload_model(request: Request, model_name: ModelName) -> dict[str, str]:
    scheduler = request.app.state.scheduler
    scheduler.resolve(model_name)
    await scheduler.unload(model_name)
    return {"name": model_name, "state": "UNLOADED"}


@router.post(
    "/v2/repository/models/{model_name}/versions/{model_version}/unload",
    dependencies=[Depends(require_admin)],
    summary="Stop serving one version, once its queued and running requests are answered",
)
async def unload_version(
    request: Request, model_name: ModelName, model_version: Annotated[str, Path(pattern=r"^[0-9]+$")]
) -> dict[str, str]:
    scheduler = request.app.state.scheduler
    scheduler.resolve(model_name, model_version)  # 404 naming the versions there are
    await scheduler.unload(model_name, model_version)
    return {"name": model_name, "version": model_version, "state": "UNLOADED"}


class DefaultVersion(BaseModel):
    name: str
    default_version: str = Field(description="The version a request without a version gets")
    promoted: list[str] = Field(description="Promoted versions, oldest first; empty: the newest ready version serves")


class Promotion(BaseModel):
    version: str = Field(pattern=r"^[0-9]+$", examples=["3"])


def _require_ready(scheduler: Scheduler, name: str, version: str, error: type[XRServeError]) -> ModelVersion:
    """Only a READY version can take requests: else `error` (404 first, naming the versions there are)."""
    chosen = scheduler.resolve(name, version)
    if not chosen.ready:
        raise error(
            f"model '{name}' version {version} is {chosen.state}, not READY; "
            f"load it first (POST /v2/repository/models/{name}/load)"
        )
    return chosen


def _default_of(request: Request, name: str) -> DefaultVersion:
    state = request.app.state
    return DefaultVersion(
        name=name,
        default_version=state.scheduler.resolve(name).version,
        promoted=list(state.promoted.history.get(name, [])),
    )


@router.post(
    "/v2/repository/models/{model_name}/promote",
    response_model=DefaultVersion,
    dependencies=[Depends(require_admin)],
    summary="Make a version the default for requests without one",
)
async def promote_model(request: Request, model_name: ModelName, body: Promotion) -> DefaultVersion:
    state = request.app.state
    _require_ready(state.scheduler, model_name, body.version, Unavailable)
    _end_canary(request, model_name, f"promoted version {body.version}")
    state.promoted.promote(model_name, body.version)
    return _default_of(request, model_name)


@router.post(
    "/v2/repository/models/{model_name}/rollback",
    response_model=DefaultVersion,
    dependencies=[Depends(require_admin)],
    responses={
        409: {
            "model": ErrorBody,
            "description": ("nothing to roll back to: no version was promoted and no older version is ready"),
        }
    },
    summary="Back to the previous default (with none promoted: the next older ready version)",
)
async def rollback_model(request: Request, model_name: ModelName) -> DefaultVersion:
    state = request.app.state
    scheduler = state.scheduler
    serving = scheduler.resolve(model_name).version
    if _end_canary(request, model_name, "rolled back"):
        return _default_of(request, model_name)  # the canary was the latest change: all traffic back to stable
    if state.promoted.history.get(model_name):
        state.promoted.pop(model_name)  # the previous promoted version, or else the newest ready
    else:
        older = [v for v, m in scheduler.models[model_name].items() if m.ready and int(v) < int(serving)]
        if not older:
            raise Conflict(
                f"model '{model_name}' has no ready version older than {serving} to roll back to; "
                "load one first (POST /v2/repository/models/{name}/load)"
            )
        state.promoted.promote(model_name, max(older, key=int))
    return _default_of(request, model_name)


class CanaryStart(BaseModel):
    version: str = Field(pattern=r"^[0-9]+$", examples=["2"], description="the version to try on a share of requests")
    percent: float = Field(gt=0, lt=100, examples=[20], description="its share of the requests without a version")


class CanaryState(BaseModel):
    name: str
    active: bool = Field(description="whether a canary runs now")
    default_version: str = Field(description="the stable version: requests without a version outside the share")
    version: str | None = Field(None, description="the canary version")
    percent: float = Field(0, description="its share of the requests without a version")
    window_s: float | None = Field(None, description="the window the versions are compared over")
    canary_requests: int | None = Field(None, description="requests the canary answered or failed in the window")
    canary_error_rate: float | None = None
    stable_requests: int | None = None
    stable_error_rate: float | None = None


def _canary_of(request: Request, name: str) -> CanaryState:
    scheduler = request.app.state.scheduler
    default = scheduler.resolve(name).version  # 404 naming the models if unknown
    canary = scheduler.canaries.active.get(name)
    if canary is None:
        return CanaryState(name=name, active=False, default_version=default)
    found = canary.state()
    return CanaryState(
        name=name,
        active=True,
        default_version=canary.stable,
        version=canary.version,
        percent=canary.percent,
        window_s=canary.policy.window_s,
        canary_requests=found["canary_requests"],
        canary_error_rate=found["canary_error_rate"],
        stable_requests=found["stable_requests"],
        stable_error_rate=found["stable_error_rate"],
    )


def _end_canary(request: Request, name: str, why: str) -> bool:
    ended = request.app.state.scheduler.canaries.end(name)
    if ended is not None:
        request.scope["xrserve.note"] = f"ended the canary of version {ended.version} ({why})"
    return ended is not None


CANARY = "/v2/repository/models/{model_name}/canary"


@router.post(
    CANARY,
    response_model=CanaryState,
    dependencies=[Depends(require_admin)],
    responses={409: {"model": ErrorBody, "description": "the version is not READY, or there is no stable version"}},
    summary="Send a share of the requests without a version to a version, rolled back if it does worse",
)
async def start_canary(request: Request, model_name: ModelName, body: CanaryStart) -> CanaryState:
    state = request.app.state
    scheduler = state.scheduler
    chosen = _require_ready(scheduler, model_name, body.version, Conflict)
    running = scheduler.canaries.active.get(model_name)
    stable = running.stable if running is not None else scheduler.resolve(model_name).version
    if stable == body.version:
        if state.promoted.current.get(model_name) == body.version:
            raise Conflict(
                f"model '{model_name}' version {body.version} is already the default (promoted); "
                "promote the version to compare it with first (POST .../promote)"
            )
        others = [v for v, m in scheduler.models[model_name].items() if m.ready and v != body.version]
        if not others:
            raise Conflict(
                f"model '{model_name}' has no other ready version to compare version {body.version} with; "
                "a canary needs a stable version: load one first"
            )
        stable = max(others, key=int)
    if state.promoted.current.get(model_name) != stable:
        state.promoted.promote(model_name, stable)  # so that ending the canary brings every request back to it
    scheduler.canaries.start(model_name, body.version, stable, body.percent, chosen.config.canary)
    request.scope["xrserve.note"] = f"canary: version {body.version} at {body.percent:g}% (stable: {stable})"
    return _canary_of(request, model_name)


@router.get(
    CANARY,
    response_model=CanaryState,
    dependencies=[Depends(require_admin)],
    summary="The model's canary: its version, share and how it and the stable version do",
)
async def get_canary(request: Request, model_name: ModelName) -> CanaryState:
    return _canary_of(request, model_name)


@router.delete(
    CANARY,
    response_model=CanaryState,
    dependencies=[Depends(require_admin)],
    responses={409: {"model": ErrorBody, "description": "no canary runs for the model"}},
    summary="End the canary: every request without a version goes to the stable version",
)
async def end_canary(request: Request, model_name: ModelName) -> CanaryState:
    request.app.state.scheduler.resolve(model_name)  # 404 naming the models if unknown
    if not _end_canary(request, model_name, "ended by an operator"):
        raise Conflict(f"model '{model_name}' has no canary running; start one with POST .../canary")
    return _canary_of(request, model_name)


class AuditEntry(BaseModel):
    time: float = Field(description="when the request ended, Unix seconds")
    key_id: str | None = Field(description="the API key's id (`anonymous` in --dev); none: no valid key")
    method: str
    route: str = Field(description="the route template, e.g. /v2/models/{model_name}/infer")
    model: str | None
    version: str | None
    status: int
    latency_ms: float
    client: str | None = Field(description="the client's address")
    note: str | None = Field(description="what else the route recorded (never a payload)")


class AuditPage(BaseModel):
    data: list[AuditEntry] = Field(description="newest first")


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    dependencies=[Depends(require_admin)],
    responses=OPENAI_ERRORS,  # a /v1 route: errors in OpenAI's shape, like the others under /v1
    summary="The newest audit records, newest first (each written before its request's answer was sent)",
)
async def audit_records(
    request: Request, limit: int = Query(100, ge=1, le=1000, description="how many records")
) -> AuditPage:
    # reads block (SQLite, or PostgreSQL's round trips): off the event loop, so inference requests go on meanwhile
    records = await asyncio.to_thread(tail, request.app.state.database.audit_source(), limit)
    return AuditPage(data=[AuditEntry(**asdict(r)) for r in reversed(records)])


@router.get(
    "/metrics",
    tags=["Observability"],
    summary="Prometheus metrics (text format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    scheduler = request.app.state.scheduler
    body = scheduler.metrics.render() + await scheduler.replica_metrics()  # the Ray engine's replicas' series
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/engine",
    dependencies=[Depends(require_admin)],
    responses=OPENAI_ERRORS,
    summary="Where the models compute: the embedded engine's versions, or the Ray Serve engine's "
    "applications and replicas (state, process, node, last report)",
)
async def engine_status(request: Request) -> dict[str, Any]:
    status: dict[str, Any] = await request.app.state.scheduler.engine_status()
    return status
