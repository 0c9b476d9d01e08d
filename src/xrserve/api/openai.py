"""OpenAI-compatible routes, so the official `openai` package works against xrserve."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from xrserve.api.oip_schema import ModelName
from xrserve.api.openai_protocol import (
    MAX_EMBEDDING_INPUTS,
    OPENAI_ERRORS,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelList,
    OpenAIModel,
    Usage,
)
from xrserve.core.controls import deadline_from
from xrserve.core.errors import BadRequest
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import ModelVersion, Scheduler
from xrserve.security.guard import KeyFirstRoute, guard_of, require_key

# a key is checked before the body is (401 before 400); the model's scope once the body names the model
router = APIRouter(
    tags=["OpenAI-compatible"],
    responses=OPENAI_ERRORS,
    dependencies=[Depends(require_key)],
    route_class=KeyFirstRoute,
)

_STARTED = int(time.time())


def scheduler_of(request: Request) -> Scheduler:
    return request.app.state.scheduler


def _listing(model: ModelVersion) -> OpenAIModel:
    return OpenAIModel(id=model.name, created=_STARTED)


@router.get("/v1/models", response_model=ModelList, summary="Models this key may use")
async def list_models(request: Request) -> ModelList:
    key = guard_of(request).identify(request)
    scheduler = scheduler_of(request)
    names = [name for name in sorted(scheduler.models) if key.allows(name)]
    return ModelList(data=[_listing(scheduler.resolve(name)) for name in names])


@router.get("/v1/models/{model_name}", response_model=OpenAIModel, summary="One model")
async def get_model(request: Request, model_name: ModelName) -> OpenAIModel:
    guard_of(request).authorize(request, model_name)
    return _listing(scheduler_of(request).resolve(model_name))


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise BadRequest("'input' is empty; send a text or a non-empty list of texts")
    if not all(isinstance(item, str) for item in value):
        raise BadRequest("'input' must be a text or a list of texts; token id input is not supported")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise BadRequest(f"'input' has {len(value)} texts; at most {MAX_EMBEDDING_INPUTS} per request")
    return value


@router.post("/v1/embeddings", response_model=EmbeddingResponse, summary="Embeddings (OpenAI format)")
async def embeddings(request: Request, body: EmbeddingRequest) -> Response:
    arrival = time.monotonic()
    guard_of(request).authorize(request, body.model)
    scheduler = scheduler_of(request)
    model = scheduler.resolve(body.model)
    specs = model.config.input_specs
    outputs = model.config.output_specs
    if list(specs) != ["text"] or specs["text"].datatype != "BYTES" or "embedding" not in outputs:
        raise BadRequest(
            f"model '{body.model}' is not an embedding model (it needs a BYTES input 'text' and an output 'embedding')"
        )
    width = outputs["embedding"].shape[-1]
    if body.dimensions is not None and body.dimensions != width:
        raise BadRequest(
            f"model '{body.model}' makes {width}-dimensional embeddings; 'dimensions' "
            f"{body.dimensions} cannot be served (leave it out)"
        )
    texts = _texts(body.input)
    chunk = model.config.max_batch_size or 1
    deadline = deadline_from({}, request.headers.get("x-deadline-ms"), arrival)
    results = await asyncio.gather(
        *(
            scheduler.submit(
                InferenceRequest(
                    model=model.name,
                    version=model.version,
                    inputs={
                        "text": np.array(
                            [t.encode("utf-8", "surrogatepass") for t in texts[i : i + chunk]], dtype=object
                        )
                    },
                    deadline=deadline,
                    session=request.scope.get("xrserve.key_id"),
                    arrival=arrival,
                )
            )
            for i in range(0, len(texts), chunk)
        )
    )
    vectors = np.concatenate([r.outputs["embedding"] for r in results]).astype(np.float32)
    tokens = int(sum(int(r.outputs["tokens"].sum()) for r in results if "tokens" in r.outputs))
    request.scope["xrserve.version"] = model.version
    if body.encoding_format == "base64":
        data = [
            Embedding(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode())
            for i, v in enumerate(vectors)
        ]
    else:
        data = [Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)]
    payload = EmbeddingResponse(data=data, model=model.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
    return Response(payload.model_dump_json(), media_type="application/json")
