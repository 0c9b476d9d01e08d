"""`POST /v1/vision/{model}`: one image in (multipart or a raw image body), JSON result out.

The simple door to the perception models for clients that do not speak the Open
Inference Protocol: `curl -F image=@photo.jpg .../v1/vision/hands`. Model parameters
(camera intrinsics for `markers`, `max_hands`, ...) come as a `parameters` form field
holding a JSON object, or as query parameters. Like every route it only builds an
`InferenceRequest`; the scheduler does the rest.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from xrserve.api.oip_schema import ModelName
from xrserve.api.openai_protocol import OPENAI_ERRORS
from xrserve.core.client import InferenceClient
from xrserve.core.controls import deadline_from
from xrserve.core.errors import BadRequest, PayloadTooLarge
from xrserve.core.images import image_size
from xrserve.core.request import InferenceRequest
from xrserve.security.guard import KeyFirstRoute, require_model_scope

router = APIRouter(tags=["Vision"], responses=OPENAI_ERRORS, route_class=KeyFirstRoute)  # /v1: OpenAI errors

MAX_IMAGE_BYTES = 16 * 2**20
EXAMPLE = "curl -H 'Authorization: Bearer xrs_...' -F image=@photo.jpg http://HOST/v1/vision/hands"


def _number_or_text(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


async def _image_and_parameters(request: Request) -> tuple[bytes, dict[str, Any]]:
    parameters: dict[str, Any] = {k: _number_or_text(v) for k, v in request.query_params.items()}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16, max_part_size=MAX_IMAGE_BYTES) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise BadRequest(f"the form has no file field 'image'; send the photo as image=@file.jpg ({EXAMPLE})")
            data = await upload.read(MAX_IMAGE_BYTES + 1)
            extra = form.get("parameters")
            if isinstance(extra, str) and extra.strip():
                try:
                    decoded = orjson.loads(extra)
                except orjson.JSONDecodeError:
                    raise BadRequest("form field 'parameters' must be a JSON object, e.g. {\"fx\": 600}") from None
                if not isinstance(decoded, dict):
                    raise BadRequest("form field 'parameters' must be a JSON object, e.g. {\"fx\": 600}")
                parameters.update(decoded)
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        data = await request.body()
    else:
        raise BadRequest(
            f"send the image as multipart/form-data (field 'image') or as a raw image/jpeg or "
            f"image/png body; got Content-Type '{content_type or 'none'}' ({EXAMPLE})"
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise PayloadTooLarge(f"the image is over {MAX_IMAGE_BYTES // 2**20} MiB; send a smaller JPEG")
    if not data:
        raise BadRequest(f"the image is empty (0 bytes); send a JPEG or PNG ({EXAMPLE})")
    return data, parameters


@router.post(
    "/v1/vision/{model_name}",
    summary="Perception on one image (hands, pose, face, segmentation, "
    "markers, ocr): multipart field 'image' or a raw image body; JSON result",
    dependencies=[Depends(require_model_scope)],
)
async def vision(request: Request, model_name: ModelName) -> Response:
    arrival = time.monotonic()
    client: InferenceClient = request.app.state.scheduler
    model = client.resolve(model_name)
    images = model.capabilities.image_inputs
    if len(images) != 1:
        takes = [n for n in client.model_names() if len(client.resolve(n).capabilities.image_inputs) == 1]
        raise BadRequest(
            f"model '{model_name}' does not take an image (one input with content_type = \"image\"); "
            f"the models that do are {takes}"
        )
    data, parameters = await _image_and_parameters(request)
    width, height = image_size(data)  # 400/413 from the header, before anything is queued or decoded
    header = request.headers.get("x-deadline-ms")
    inference = InferenceRequest(
        model=model.name,
        version=model.version,
        inputs={images[0]: np.array([data], dtype=object)},
        parameters=parameters,
        deadline=deadline_from(parameters, header, arrival),
        session=request.scope.get("xrserve.key_id"),
        arrival=arrival,
    )
    result = await client.submit(inference)
    request.scope["xrserve.version"] = result.version
    body: dict[str, Any] = {"model": result.model, "version": result.version, "width": width, "height": height}
    body.update(model.capabilities.present(result.outputs, 0))
    body["server_ms"] = round((time.monotonic() - arrival) * 1000, 2)
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
