"""OpenAPI shapes of the Open Inference Protocol, for /docs and for fuzzing.

Requests are parsed by hand (`core/codec.py`) because the binary extension appends raw
bytes after the JSON; their schema is given here as plain JSON Schema. Responses are
pydantic models so FastAPI documents them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from xrserve.core.controls import MAX_DEADLINE_MS
from xrserve.core.request import Priority
from xrserve.core.tensors import DATATYPES

ModelName = Annotated[str, Path(description="A model's name", examples=["minilm"])]
VersionNumber = Annotated[str, Path(description="A version number of the model", examples=["1"])]


class ErrorBody(BaseModel):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None  # {"content_type": "image"}: send an encoded image per row

    @model_serializer(mode="wrap")
    def _without_empty_parameters(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - an annotation
        data = handler(self)  # would replace the fields in the JSON schema with its type
        if data.get("parameters", 0) is None:
            del data["parameters"]  # Triton's metadata has no key rather than null
        return data


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Readiness(BaseModel):
    name: str | None = None
    ready: bool
    live: bool | None = None


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = Field(
        None,
        description='row-major values; NaN and infinities of FP16/FP32/FP64 as the strings "NaN", "Infinity", '
        '"-Infinity" (JSON has no literal for them)',
    )
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


class RepositoryEntry(BaseModel):
    name: str
    version: str | None = None
    state: str
    reason: str = ""


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 32},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        "data": {
            "type": "array",
            "description": "row-major values; nested lists are flattened. Floating-point tensors may carry "
            '"NaN", "Infinity" and "-Infinity" as strings; a number out of the datatype\'s range is a 400',
        },
    },
}
INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Open Inference Protocol v2 request. With the binary tensor extension the JSON is followed by "
    "raw tensor bytes and the header Inference-Header-Content-Length gives the JSON length.",
    "content": {
        "application/json": {
            "example": {
                "id": "frame-1",
                "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a red apple"]}],
            },
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "description": "scheduling controls (below) and the model's own parameters, which "
                        "GET /v2/models/{name}/config lists; a parameter the model does not take is a 400",
                        # timeout is read only without deadline_ms, and then it must be a number of microseconds
                        "anyOf": [
                            {"required": ["deadline_ms"]},
                            {
                                "properties": {
                                    "timeout": {
                                        "type": "number",
                                        "exclusiveMinimum": 0,
                                        "maximum": MAX_DEADLINE_MS * 1000,
                                    }
                                }
                            },
                        ],
                        "properties": {
                            "deadline_ms": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_DEADLINE_MS,
                                "description": "answer only if it can start within this many ms (408 otherwise)",
                            },
                            "timeout": {
                                "description": "Triton's deadline, in microseconds (ignored when deadline_ms is given)"
                            },
                            "priority": {
                                "anyOf": [
                                    {"type": "null", "description": "the model's default"},
                                    {"type": "string", "enum": [p.name.lower() for p in Priority]},
                                    {
                                        "type": "integer",
                                        "minimum": 0,
                                        "description": "Triton's: 0 the model's default, 1 interactive, 2 and up bulk",
                                    },
                                ]
                            },
                            "binary_data_output": {
                                "type": "boolean",
                                "description": "true: every output in binary (the binary tensor extension)",
                            },
                        },
                    },
                    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                    "outputs": {
                        "type": ["array", "null"],
                        "description": "the outputs to send (absent or null: all)",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                        },
                    },
                },
            },
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}

#: The 200 of the infer routes besides InferResponse: binary outputs, when a request asks for them.
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the outputs: JSON, or with binary outputs asked for (binary_data_output, or an output's "
        "binary_data parameter) the JSON header followed by the raw tensor bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Inference-Header-Content-Length": {
                "description": "with binary outputs: the length of the JSON header at the start of the body",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    }
}

#: Every status an error may have, with what it means; the error body's model is per protocol.
ERROR_STATUSES: dict[int | str, str] = {
    400: "the request is malformed or does not fit the model",
    401: "no valid API key",
    403: "the API key lacks the scope",
    404: "unknown model or version",
    408: "the request's deadline passed before it could run",
    413: "the body is larger than the server's limit",
    429: "too many failed key attempts for this key id or address, or too much work in flight; see Retry-After",
    500: "the model failed",
    503: "queue full or model restarting; see Retry-After",
    "4XX": "another client error: 405 method not allowed, 409 a camera frame superseded by a newer one",
}

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in ERROR_STATUSES.items()
}
