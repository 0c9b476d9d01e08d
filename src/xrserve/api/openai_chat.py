"""`/v1/chat/completions` and `/v1/completions`: generation with SSE streaming, JSON output, moderation.

The route renders nothing itself: the messages go to the model as JSON (the model applies
its own chat template) and the stream comes back through the scheduler. What is left
here is the OpenAI wire format, the content filter and the log-probabilities' shapes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from xrserve.api.openai_logprobs import Logprobs, Token, chat_content, completion_logprobs
from xrserve.api.openai_protocol import (
    OPENAI_ERRORS,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceDelta,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionUsage,
    ErrorDetail,
    ErrorResponse,
    SamplingParams,
    event_stream,
)
from xrserve.core.controls import deadline_from
from xrserve.core.errors import BadRequest, XRServeError
from xrserve.core.request import InferenceRequest, Priority
from xrserve.core.stream import Stream
from xrserve.security.guard import IDENTIFIED_SCOPE, KeyFirstRoute, guard_of, require_key
from xrserve.security.limits import RateLimited
from xrserve.security.moderation import Moderator, StreamMasker

# a key is checked before the body is (401 before 400); the model's scope once the body names the model
router = APIRouter(
    tags=["OpenAI-compatible"],
    responses=OPENAI_ERRORS,
    dependencies=[Depends(require_key)],
    route_class=KeyFirstRoute,
)
NOTE_SCOPE = "xrserve.note"


class InvalidParameter(BadRequest):
    """A 400 whose OpenAI error body names the parameter in `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _moderator(request: Request) -> Moderator:
    return request.app.state.moderator


def _parameters(body: SamplingParams, max_tokens: int | None) -> dict[str, Any]:
    if body.n != 1:
        raise BadRequest(f"n={body.n} is not supported; ask for one choice (n=1) per request")
    parameters: dict[str, Any] = {"temperature": body.temperature, "top_p": body.top_p, "stop": body.stop_list()}
    if max_tokens is not None:
        parameters["max_tokens"] = max_tokens
    if body.seed is not None:
        parameters["seed"] = body.seed
    if body.top_k is not None:
        parameters["top_k"] = body.top_k
    return parameters


def _check_input(request: Request, texts: list[str]) -> None:
    verdict = _moderator(request).check("\n".join(texts))
    if verdict.flagged:
        request.scope[NOTE_SCOPE] = f"moderation: input refused [{', '.join(verdict.categories)}]"
        raise BadRequest(
            f"the input was flagged by the content filter ({', '.join(verdict.categories)}) "
            "and was not sent to the model"
        )


def _check_tokens(request: Request) -> None:
    """A key with a token limit (--tpm, --tpd) starts a generation only while its budgets are positive."""
    key = request.scope.get(IDENTIFIED_SCOPE)
    if key is not None and key.limits:
        try:
            request.app.state.rate_limits.check_tokens(key)
        except RateLimited:
            request.scope[NOTE_SCOPE] = "rate limited: LLM tokens"
            raise


def _charge_tokens(request: Request, stream: Stream) -> None:
    """After a generation: its prompt + completion tokens come off the key's budgets."""
    key = request.scope.get(IDENTIFIED_SCOPE)
    if key is not None and key.limits:
        request.app.state.rate_limits.charge_tokens(key, stream.usage.prompt_tokens + stream.usage.completion_tokens)


async def _open(request: Request, body: SamplingParams, text_input: str, parameters: dict[str, Any]) -> Stream:
    arrival = time.monotonic()
    scheduler = request.app.state.scheduler
    model = scheduler.resolve(body.model)
    if not model.config.streaming:
        raise BadRequest(f"model '{body.model}' is not a text generation model")
    _check_tokens(request)
    stream = await scheduler.stream(
        InferenceRequest(
            model=model.name,
            version=model.version,
            arrival=arrival,
            inputs={"text_input": np.array([text_input.encode("utf-8", "surrogatepass")], dtype=object)},
            parameters=parameters,
            deadline=deadline_from({}, request.headers.get("x-deadline-ms"), arrival),
            priority=Priority.INTERACTIVE,
            session=request.scope.get("xrserve.key_id"),
        )
    )
    request.scope["xrserve.version"] = stream.version
    try:
        await stream.first()  # an error before any output (prompt too long...) becomes the HTTP status
    except BaseException:
        stream.cancel()
        raise
    return stream


async def _collect(request: Request, stream: Stream, logprobs: bool) -> tuple[str, dict[str, Any], list[Token]]:
    """The whole answer, masked, the final chunk (finish reason, token counts) and its tokens' logprobs."""
    masker = StreamMasker(_moderator(request))
    track = Logprobs(masker)
    tokens: list[Token] = []
    final: dict[str, Any] = {}
    try:
        async for chunk in stream:
            if chunk["kind"] == "delta":
                tokens += track.step(chunk.get("logprobs", []), masker.feed(chunk.get("text", "")))[1]
            elif chunk["kind"] == "done":
                final = chunk
    finally:
        stream.cancel()
        _charge_tokens(request, stream)
    tokens += track.step([], masker.flush(), final=True)[1]
    _note(request, masker)
    return track.shown, final, tokens


def _note(request: Request, masker: StreamMasker) -> None:
    if masker.categories:
        done = "withheld" if masker.moderator.action == "withhold" else "masked"
        request.scope[NOTE_SCOPE] = f"moderation: output {done} [{', '.join(sorted(masker.categories))}]"


def _usage(final: dict[str, Any]) -> CompletionUsage:
    return CompletionUsage.of(
        int(final.get("prompt_tokens", 0)), int(final.get("completion_tokens", 0)), int(final.get("cached_tokens", 0))
    )


def _sse(payload: BaseModel | str) -> bytes:
    data = payload if isinstance(payload, str) else payload.model_dump_json()
    return f"data: {data}\n\n".encode()


class _Chunks:
    """Builds the SSE chunks of one streamed answer: chat deltas or text completion pieces."""

    def __init__(self, chat: bool, id: str, created: int, model: str) -> None:
        self.chat, self.shape = chat, {"id": id, "created": created, "model": model}

    def opening(self) -> BaseModel | None:
        """The chat stream's first chunk announces the role; text completions have none."""
        if not self.chat:
            return None
        return ChatCompletionChunk(
            **self.shape, choices=[ChatChunkChoice(delta=ChoiceDelta(role="assistant", content=""))]
        )

    def piece(self, text: str, finish_reason: str | None = None, tokens: list[Token] | None = None) -> BaseModel:
        """A chunk of text; `tokens`: the logprobs of the tokens it carries, when they were asked for."""
        if self.chat:
            delta = ChoiceDelta(content=text) if text else ChoiceDelta()
            logprobs = None if tokens is None else ChoiceLogprobs(content=chat_content(tokens))
            choice = ChatChunkChoice(delta=delta, logprobs=logprobs, finish_reason=finish_reason)
            return ChatCompletionChunk(**self.shape, choices=[choice])
        piece = CompletionChoice(
            text=text,
            logprobs=None if tokens is None else completion_logprobs(tokens),
            finish_reason=finish_reason,
        )
        return CompletionChunk(**self.shape, choices=[piece])

    def usage(self, usage: CompletionUsage) -> BaseModel:
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return kind(**self.shape, choices=[], usage=usage)


async def _events(
    request: Request, stream: Stream, body: SamplingParams, chunks: _Chunks, logprobs: bool
) -> AsyncIterator[bytes]:
    """SSE chunks; the client going away cancels the generator, which frees the model's slot.

    With `logprobs`, each chunk carries the log-probabilities of the tokens whose text it
    carries (a token whose text the content filter still holds back goes with a later one).
    """
    masker = StreamMasker(_moderator(request))
    track = Logprobs(masker)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    try:
        first = chunks.opening()
        if first is not None:
            yield _sse(first)
        final: dict[str, Any] = {}
        async for chunk in stream:
            if chunk["kind"] == "delta":
                text = masker.feed(chunk.get("text", ""))
                tokens = None
                if logprobs:  # the text goes out with its tokens: up to the end of the last whole one
                    text, tokens = track.step(chunk.get("logprobs", []), text)
                if text or tokens:
                    yield _sse(chunks.piece(text, tokens=tokens))
            elif chunk["kind"] == "done":
                final = chunk
        rest, tokens = masker.flush(), None
        if logprobs:
            rest, tokens = track.step([], rest, final=True)
        if rest or tokens:
            yield _sse(chunks.piece(rest, tokens=tokens))
        _note(request, masker)
        yield _sse(chunks.piece("", final.get("finish_reason", "stop")))
        if include_usage:
            yield _sse(chunks.usage(_usage(final)))
    except XRServeError as exc:  # the model failed mid-stream: tell the client in-band
        yield _sse(ErrorResponse(error=ErrorDetail(message=exc.message, type="server_error", code=exc.status_code)))
    finally:
        stream.cancel()
        _charge_tokens(request, stream)
    yield _sse("[DONE]")


def _chat_logprobs(body: ChatCompletionRequest) -> dict[str, Any]:
    """The model's `logprobs` parameter: how many alternatives, when the answer's logprobs are asked for."""
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidParameter(
            "top_logprobs",
            f"top_logprobs ({body.top_logprobs}) needs logprobs: true; send both, or leave top_logprobs out",
        )
    return {"logprobs": body.top_logprobs or 0} if body.logprobs else {}


def _completion_logprobs(body: CompletionRequest) -> dict[str, Any]:
    if body.logprobs is None:
        return {}
    if body.echo:
        raise InvalidParameter(
            "echo",
            "echo with logprobs is not supported (the prompt's log-probabilities are not computed); send one of them",
        )
    return {"logprobs": body.logprobs}


def _json_parameters(body: ChatCompletionRequest) -> dict[str, Any]:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return {}
    if fmt.type == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {"response_format": {"type": "json_schema", "schema": fmt.json_schema.schema_}}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion (OpenAI format, SSE with stream=true)",
    responses=event_stream(ChatCompletionChunk, "the answer; with stream=true, chat.completion.chunk events"),
)
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    guard_of(request).authorize(request, body.model)
    _check_input(request, [m.text() for m in body.messages])
    parameters = _parameters(body, body.max_completion_tokens or body.max_tokens)
    parameters.update(_json_parameters(body), input_format="chat")
    parameters.update(_chat_logprobs(body))
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    stream = await _open(request, body, json.dumps(messages), parameters)
    answer_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    logprobs = bool(body.logprobs)
    if body.stream:
        chunks = _events(request, stream, body, _Chunks(True, answer_id, created, body.model), logprobs)
        # the background task also frees the slot when the client leaves before the first chunk
        return StreamingResponse(chunks, media_type="text/event-stream", background=BackgroundTask(stream.cancel))
    text, final, tokens = await _collect(request, stream, logprobs)
    choice = ChatChoice(
        message=AssistantMessage(content=text),
        logprobs=ChoiceLogprobs(content=chat_content(tokens)) if logprobs else None,
        finish_reason=final.get("finish_reason", "stop"),
    )
    answer = ChatCompletion(id=answer_id, created=created, model=body.model, usage=_usage(final), choices=[choice])
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post(
    "/v1/completions",
    response_model=Completion,
    summary="Text completion (OpenAI format, SSE with stream=true)",
    responses=event_stream(CompletionChunk, "the completion; with stream=true, text_completion events"),
)
async def completions(request: Request, body: CompletionRequest) -> Response:
    guard_of(request).authorize(request, body.model)
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise BadRequest("send one prompt per request (a list of several prompts is not supported)")
        body.prompt = body.prompt[0]
    parameters = {**_parameters(body, body.max_tokens), **_completion_logprobs(body)}
    _check_input(request, [body.prompt])
    stream = await _open(request, body, body.prompt, parameters)
    answer_id, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    prefix = body.prompt if body.echo else ""
    logprobs = body.logprobs is not None
    if body.stream:
        chunks = _events(request, stream, body, _Chunks(False, answer_id, created, body.model), logprobs)
        # the background task also frees the slot when the client leaves before the first chunk
        return StreamingResponse(chunks, media_type="text/event-stream", background=BackgroundTask(stream.cancel))
    text, final, tokens = await _collect(request, stream, logprobs)
    choice = CompletionChoice(
        text=prefix + text,
        logprobs=completion_logprobs(tokens) if logprobs else None,
        finish_reason=final.get("finish_reason", "stop"),
    )
    answer = Completion(id=answer_id, created=created, model=body.model, usage=_usage(final), choices=[choice])
    return Response(answer.model_dump_json(), media_type="application/json")
