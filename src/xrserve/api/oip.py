"""Open Inference Protocol v2 REST (KServe / Triton / MLServer), so their clients work unchanged."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from xrserve import __version__
from xrserve.api.limits import decompress
from xrserve.api.oip_schema import (
    ERRORS,
    INFER_REQUEST_BODY,
    INFER_RESPONSES,
    InferResponse,
    ModelMetadata,
    ModelName,
    Readiness,
    ServerMetadata,
    VersionNumber,
)
from xrserve.core import codec as oip_codec
from xrserve.core.controls import deadline_from, priority_from
from xrserve.core.errors import BadRequest
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import ModelVersion, Scheduler
from xrserve.security.guard import KeyFirstRoute, require_model_scope

router = APIRouter(tags=["Open Inference Protocol v2"], responses=ERRORS, route_class=KeyFirstRoute)

PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "torchscript": "pytorch_torchscript",
    "python": "python",
    "gguf": "llamacpp_gguf",
    "yolo": "onnxruntime_onnx",  # an Ultralytics detector export, with its pre- and post-processing
}
EXTENSIONS = ["binary_tensor_data", "model_repository", "schedule_policy"]


def scheduler_of(request: Request) -> Scheduler:
    return request.app.state.scheduler


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "xrserve", "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live", response_model=Readiness, summary="Liveness")
async def live() -> dict[str, Any]:
    return {"live": True, "ready": True}


@router.get(
    "/v2/health/ready", response_model=Readiness, summary="Readiness: startup done and every loaded model ready"
)
async def ready(request: Request) -> Response:
    scheduler = scheduler_of(request)
    is_ready = request.app.state.started and all(v.ready for v in scheduler.all_versions())
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


def _metadata(model: ModelVersion, scheduler: Scheduler) -> dict[str, Any]:
    versions = sorted(scheduler.models.get(model.name, {}), key=int)
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORMS[model.config.runtime],
        "inputs": [t.spec().metadata() for t in model.config.inputs],
        "outputs": [t.spec().metadata() for t in model.config.outputs],
    }


@router.get(
    "/v2/models/{model_name}",
    response_model=ModelMetadata,
    summary="Model metadata",
    dependencies=[Depends(require_model_scope)],
)
async def model_metadata(request: Request, model_name: ModelName) -> dict[str, Any]:
    scheduler = scheduler_of(request)
    return _metadata(scheduler.resolve(model_name), scheduler)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    summary="Model version metadata",
    dependencies=[Depends(require_model_scope)],
)
async def model_version_metadata(
    request: Request, model_name: ModelName, model_version: VersionNumber
) -> dict[str, Any]:
    scheduler = scheduler_of(request)
    return _metadata(scheduler.resolve(model_name, model_version), scheduler)


async def _ready(request: Request, model_name: ModelName, model_version: str | None) -> Response:
    model = scheduler_of(request).resolve(model_name, model_version)
    return JSONResponse({"name": model.name, "ready": model.ready}, status_code=200 if model.ready else 503)


@router.get(
    "/v2/models/{model_name}/ready",
    response_model=Readiness,
    summary="Model readiness",
    dependencies=[Depends(require_model_scope)],
)
async def model_ready(request: Request, model_name: ModelName) -> Response:
    return await _ready(request, model_name, None)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}/ready",
    response_model=Readiness,
    summary="Model version readiness",
    dependencies=[Depends(require_model_scope)],
)
async def model_version_ready(request: Request, model_name: ModelName, model_version: VersionNumber) -> Response:
    return await _ready(request, model_name, model_version)


@router.get(
    "/v2/models/{model_name}/config",
    summary="The model's configuration (model.toml as JSON)",
    dependencies=[Depends(require_model_scope)],
)
async def model_config(request: Request, model_name: ModelName) -> dict[str, Any]:
    model = scheduler_of(request).resolve(model_name)
    found = model.config.model_dump(exclude={"directory"})
    declared = model.capabilities.parameters
    # what a request may send in `parameters` (JSON Schema), when the model declares it; null: anything
    found["request_parameters"] = declared.model_json_schema() if declared is not None else None
    found["camera"] = model.capabilities.camera
    return found


async def _infer(request: Request, model_name: ModelName, model_version: str | None) -> Response:
    return await infer_response(request, model_name, model_version, await request.body())


async def infer_response(request: Request, model_name: str, model_version: str | None, body: bytes) -> Response:
    """One OIP inference, wire to wire; shared by the FastAPI route and the raw-ASGI fast path."""
    arrival = time.monotonic()
    limit = request.app.state.settings.max_body_bytes
    body = decompress(body, request.headers.get("content-encoding"), limit)
    document, binary = oip_codec.parse_body(body, request.headers.get("inference-header-content-length"))
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    outputs, binary_outputs, all_binary = oip_codec.requested_outputs(document)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    affinity = parameters.get("session")  # the client's session: a canary keeps it on one version
    if affinity is not None and not isinstance(affinity, str):
        raise BadRequest("'parameters.session' must be a string (your session's id)")
    inference = InferenceRequest(
        model=model_name,
        version=model_version,
        inputs=oip_codec.decode_inputs(document, binary),
        parameters=parameters,
        outputs=outputs,
        deadline=deadline_from(parameters, request.headers.get("x-deadline-ms"), arrival),
        priority=priority_from(parameters),
        session=request.scope.get("xrserve.key_id"),
        id=request_id,
        arrival=arrival,
        affinity=affinity,
    )
    result = await scheduler_of(request).submit(inference)
    request.scope["xrserve.version"] = result.version
    content, header_length = oip_codec.encode_response(
        result.model, result.version, result.id, result.outputs, binary_outputs, all_binary
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_length)}
    )


@router.post(
    "/v2/models/{model_name}/infer",
    response_model=InferResponse,
    summary="Inference",
    responses=INFER_RESPONSES,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
    dependencies=[Depends(require_model_scope)],
)
async def infer(request: Request, model_name: ModelName) -> Response:
    return await _infer(request, model_name, None)


@router.post(
    "/v2/models/{model_name}/versions/{model_version}/infer",
    response_model=InferResponse,
    responses=INFER_RESPONSES,
    summary="Inference on a given version",
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
    dependencies=[Depends(require_model_scope)],
)
async def infer_version(request: Request, model_name: ModelName, model_version: VersionNumber) -> Response:
    return await _infer(request, model_name, model_version)
