"""The OpenAI wire format as pydantic models, in one place (as vLLM keeps it).

Requests are parsed with these models and every response body (SSE chunks and error
bodies included) is built from them and serialised with `model_dump_json()`, so what
the routes send cannot drift from what /openapi.json declares.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, WithJsonSchema, model_serializer

from xrserve.api.oip_schema import ERROR_STATUSES


class _OmitNone(BaseModel):
    """A response model whose fields named in `omit_if_none` are left out of the JSON while None.

    OpenAI leaves such keys out (a chunk's `usage` unless asked for, the delta's `role`
    after the first chunk), and clients read a missing key as None.
    """

    omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - an annotation would replace the
        data = handler(self)  # fields in the JSON schema with its type
        for name in self.omit_if_none:
            if data.get(name, 0) is None:
                del data[name]
        return data


# -- errors ----------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong and, where there is one, the fix")
    type: str = Field(
        description="invalid_request_error, authentication_error, permission_error, "
        "not_found_error, timeout_error, rate_limit_error or server_error"
    )
    param: str | None = None
    code: int = Field(description="the HTTP status")


class ErrorResponse(BaseModel):
    """The error body of every /v1 route (OpenAI's shape, which its client libraries read)."""

    error: ErrorDetail


#: What a /v1 route may answer besides its 200, for the OpenAPI document (OIP routes use oip_schema.ERRORS).
OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in ERROR_STATUSES.items()
}


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "xrserve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit per request

#: What `input` may be. Parsing is looser (token ids, empty lists) so the route can say what is wrong with them.
_EMBEDDING_INPUT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_EMBEDDING_INPUTS},
    ]
}


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="an embedding model served here, e.g. 'minilm'")
    input: Annotated[str | list[str] | list[int] | list[list[int]], WithJsonSchema(_EMBEDDING_INPUT_SCHEMA)] = Field(
        description=f"a text or a list of 1 to {MAX_EMBEDDING_INPUTS} texts (token id input is not supported)"
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(
        description="the vector; with encoding_format 'base64', its float32 little-endian bytes in base64"
    )


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


# -- chat and text completions ---------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = "response"
    schema_: dict[str, Any] = Field(
        alias="schema",
        min_length=1,
        description="the JSON Schema the answer follows (enforced by a grammar while generating)",
    )
    strict: bool | None = None


class TextFormat(BaseModel):
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingParams(BaseModel):
    """What chat and text completions share."""

    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int | None = Field(
        default=None,
        ge=0,
        description="Extension (as in vLLM): sample among the k "
        "likeliest tokens; 0 = all. Default 40, like llama.cpp's server.",
    )
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    stop: str | list[str] | None = Field(
        default=None, json_schema_extra={"maxItems": 16}, description="a string, or at most 16, that end the answer"
    )
    # the limits only documented are checked by the route or the model, with messages that say what to do
    n: int = Field(default=1, ge=1, json_schema_extra={"maximum": 1}, description="choices: only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [s for s in stops if s]


MAX_CHAT_TOP_LOGPROBS = 20  # OpenAI's limits
MAX_COMPLETION_LOGPROBS = 5
_LOGPROBS_ARE = (
    "the model's log-probabilities after the JSON-schema mask of response_format (if any) and "
    "before temperature, top_k and top_p"
)


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = Field(
        default=None, description=f"true: the log-probability of each token of the answer ({_LOGPROBS_ARE})"
    )
    top_logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CHAT_TOP_LOGPROBS,
        description="the likeliest tokens at each position to list with their log-probabilities; needs logprobs: true",
    )


class CompletionRequest(SamplingParams):
    prompt: str | list[str] = Field(
        json_schema_extra={"minItems": 1, "maxItems": 1},
        description="the text to continue (a list holding one text is accepted too)",
    )
    echo: bool = False
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COMPLETION_LOGPROBS,
        description=f"the log-probability of each token of the answer and of this many likeliest "
        f"alternatives ({_LOGPROBS_ARE}); not with echo",
    )


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(0, description="prompt tokens reused from an earlier request's cache")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int = 0) -> CompletionUsage:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class TopLogprob(BaseModel):
    token: str = Field(description="the token's text, or 'bytes:\\xe2\\x80' when it is not whole UTF-8 on its own")
    logprob: float = Field(description="its log-probability (at most 0)")
    bytes: list[int] | None = Field(description="its UTF-8 bytes")


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(
        description="the likeliest tokens at this position, most likely first (fewer than asked for where "
        "the JSON-schema mask leaves fewer)"
    )


class ChoiceLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None = Field(description="one per token of this answer (or chunk)")
    refusal: list[ChatTokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = Field(None, description="with logprobs: true")
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage


class ChoiceDelta(_OmitNone):
    """What a chunk adds to the message: the role once (first chunk), then content."""

    omit_if_none = frozenset({"role", "content"})

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChoiceDelta
    logprobs: ChoiceLogprobs | None = Field(None, description="with logprobs: true, those of this chunk's tokens")
    finish_reason: str | None = None


class ChatCompletionChunk(_OmitNone):
    """One SSE event of a streamed chat completion (`stream=true`)."""

    omit_if_none = frozenset({"usage"})

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = Field(
        None, description="only on the last chunk, with stream_options.include_usage (whose choices are empty)"
    )


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(description="the tokens of the answer (or chunk)")
    token_logprobs: list[float] = Field(description="the log-probability of each")
    top_logprobs: list[dict[str, float]] = Field(
        description="per token, the likeliest tokens at its position and their log-probabilities"
    )
    text_offset: list[int] = Field(description="where each token starts in the completion's text")


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = Field(None, description="with logprobs: N")
    finish_reason: str | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class CompletionChunk(_OmitNone):
    """One SSE event of a streamed text completion: OpenAI's chunks are `text_completion` objects too."""

    omit_if_none = frozenset({"usage"})

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = Field(
        None, description="only on the last chunk, with stream_options.include_usage (whose choices are empty)"
    )


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema (as sent: serialization mode) with its definitions written in place.

    For schemas the OpenAPI document holds outside FastAPI's reach (the events of a stream),
    where a `$ref` to `#/$defs/...` would point into the document instead of the schema.
    """
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
                return {**target, **{k: resolve(v) for k, v in node.items() if k != "$ref"}}
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def event_stream(chunk: type[BaseModel], summary: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI 200 of a route that answers JSON, or server-sent events made of `chunk` with stream=true.

    The schema describes one event (Open API 3.1): its `data` is a chunk as JSON, an
    ErrorResponse if the model fails mid-stream, or `[DONE]`, the last event.
    """
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]", "description": "the last event"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [inline_schema(chunk), inline_schema(ErrorResponse)]},
                    },
                ]
            }
        },
    }
    return {
        200: {
            "description": summary,
            "content": {
                "text/event-stream": {
                    "schema": event,
                    "description": f"with stream=true: 'data: ' and a {chunk.__name__} as JSON per event, "
                    "ended by 'data: [DONE]'",
                }
            },
        }
    }


# -- audio -----------------------------------------------------------------------------


class Transcription(BaseModel):
    """response_format 'json'."""

    text: str


class TranscriptionWord(BaseModel):
    word: str
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    probability: float | None = None


class TranscriptionSegment(BaseModel):
    id: int
    seek: int = 0
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float
    avg_logprob: float
    compression_ratio: float = 0.0
    no_speech_prob: float


class TranscriptionVerbose(_OmitNone):
    """response_format 'verbose_json': `segments` and/or `words` as timestamp_granularities[] asks."""

    omit_if_none = frozenset({"segments", "words"})

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float = Field(description="seconds of audio")
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
