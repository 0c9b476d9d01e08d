"""OpenAPI shapes of the Open Inference Protocol, for /docs and for fuzzing.

Requests are parsed by hand (`oip_codec`) because the binary extension appends raw
bytes after the JSON; their schema is given here as plain JSON Schema. Responses are
pydantic models so FastAPI documents them.
"""

from __future__ import annotations

from typing import Any

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel

from xrserve.core.tensors import DATATYPES

ModelName = Annotated[str, Path(description="A model's name", examples=["minilm"])]
VersionNumber = Annotated[str, Path(description="A version number of the model", examples=["1"])]


class ErrorBody(BaseModel):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


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
    data: list[Any] | None = None
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
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        "data": {"type": "array", "description": "row-major values; nested lists are flattened"},
    },
}
INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Open Inference Protocol v2 request. With the binary tensor extension the JSON is followed by "
    "raw tensor bytes and the header Inference-Header-Content-Length gives the JSON length.",
    "content": {
        "application/json": {
            "example": {"id": "frame-1", "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                     "data": ["a red apple"]}]},
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "deadline_ms": {"type": "number", "exclusiveMinimum": 0,
                                            "description": "answer only if it can start within this many ms"},
                            "priority": {"type": "string", "enum": ["interactive", "bulk"]},
                            "binary_data_output": {"type": "boolean"},
                        },
                    },
                    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                        },
                    },
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "the request is malformed or does not fit the model",
        401: "no valid API key",
        403: "the API key lacks the scope",
        404: "unknown model or version",
        408: "the request's deadline passed before it could run",
        413: "the body is larger than the server's limit",
        500: "the model failed",
        503: "queue full or model restarting; see Retry-After",
    }.items()
}
