"""`/v1/chat/completions` and `/v1/completions`: generation with SSE streaming, JSON output, moderation.

The route renders nothing itself: the messages go to the model as JSON (the model applies
its own chat template) and the stream comes back through the scheduler. What is left
here is the OpenAI wire format and the content filter.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

import numpy as np
import orjson
from fastapi import APIRouter, Request, Security
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from xrserve.api.controls import deadline_from
from xrserve.api.oip_schema import ERRORS
from xrserve.api.openai_protocol import (
    ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest, SamplingParams,
)
from xrserve.core.errors import BadRequest, XRServeError
from xrserve.core.request import InferenceRequest
from xrserve.core.stream import Stream
from xrserve.security.guard import bearer, guard_of
from xrserve.security.moderation import Moderator, StreamMasker

router = APIRouter(tags=["OpenAI-compatible"], responses=ERRORS, dependencies=[Security(bearer)])
NOTE_SCOPE = "xrserve.note"


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
        raise BadRequest(f"the input was flagged by the content filter ({', '.join(verdict.categories)}) "
                         "and was not sent to the model")


async def _open(request: Request, body: SamplingParams, text_input: str, parameters: dict[str, Any]) -> Stream:
    arrival = time.monotonic()
    scheduler = request.app.state.scheduler
    model = scheduler.resolve(body.model)
    if not model.config.streaming:
        raise BadRequest(f"model '{body.model}' is not a text generation model")
    stream = await scheduler.stream(InferenceRequest(
        model=model.name, version=model.version, arrival=arrival,
        inputs={"text_input": np.array([text_input.encode("utf-8", "surrogatepass")], dtype=object)},
        parameters=parameters, deadline=deadline_from({}, request.headers, arrival),
        priority="interactive", session=request.scope.get("xrserve.key_id"),
    ))
    request.scope["xrserve.version"] = stream.version
    try:
        await stream.first()  # an error before any output (prompt too long...) becomes the HTTP status
    except BaseException:
        stream.cancel()
        raise
    return stream


async def _collect(request: Request, stream: Stream) -> tuple[str, dict[str, Any]]:
    """The whole answer, masked, and the final chunk (finish reason, token counts)."""
    masker = StreamMasker(_moderator(request))
    parts: list[str] = []
    final: dict[str, Any] = {}
    try:
        async for chunk in stream:
            if chunk["kind"] == "delta":
                parts.append(masker.feed(chunk.get("text", "")))
            elif chunk["kind"] == "done":
                final = chunk
    finally:
        stream.cancel()
    parts.append(masker.flush())
    _note(request, masker)
    return "".join(parts), final


def _note(request: Request, masker: StreamMasker) -> None:
    if masker.categories:
        request.scope[NOTE_SCOPE] = (f"moderation: output {'withheld' if masker.moderator.action == 'withhold' else 'masked'}"
                                     f" [{', '.join(sorted(masker.categories))}]")


def _usage(final: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(final.get("prompt_tokens", 0)), int(final.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(final.get("cached_tokens", 0))}}


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return f"data: {data}\n\n".encode()


async def _events(request: Request, stream: Stream, body: SamplingParams, shape: dict[str, Any],
                  delta_of: Any) -> AsyncIterator[bytes]:
    """SSE chunks; the client going away cancels the generator, which frees the model's slot."""
    masker = StreamMasker(_moderator(request))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    try:
        first = delta_of(None)
        if first is not None:
            yield _sse({**shape, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})
        final: dict[str, Any] = {}
        async for chunk in stream:
            if chunk["kind"] == "delta":
                text = masker.feed(chunk.get("text", ""))
                if text:
                    yield _sse({**shape, "choices": [{"index": 0, **delta_of(text), "finish_reason": None}]})
            elif chunk["kind"] == "done":
                final = chunk
        rest = masker.flush()
        if rest:
            yield _sse({**shape, "choices": [{"index": 0, **delta_of(rest), "finish_reason": None}]})
        _note(request, masker)
        end = {"index": 0, **delta_of(""), "finish_reason": final.get("finish_reason", "stop")}
        yield _sse({**shape, "choices": [end]})
        if include_usage:
            yield _sse({**shape, "choices": [], "usage": _usage(final)})
    except XRServeError as exc:  # the model failed mid-stream: tell the client in-band
        yield _sse({"error": {"message": exc.message, "type": "server_error", "code": exc.status_code}})
    finally:
        stream.cancel()
    yield _sse("[DONE]")


def _json_parameters(body: ChatCompletionRequest) -> dict[str, Any]:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return {}
    if fmt.type == "json_object":
        return {"response_format": {"type": "json_object"}}
    if fmt.json_schema is None or not fmt.json_schema.schema_:
        raise BadRequest("response_format json_schema needs json_schema.schema (a JSON Schema object)")
    return {"response_format": {"type": "json_schema", "schema": fmt.json_schema.schema_}}


@router.post("/v1/chat/completions", response_model=ChatCompletion, summary="Chat completion (OpenAI format, SSE with stream=true)")
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    guard_of(request).authorize(request, body.model)
    _check_input(request, [m.text() for m in body.messages])
    parameters = _parameters(body, body.max_completion_tokens or body.max_tokens)
    parameters.update(_json_parameters(body), input_format="chat")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    stream = await _open(request, body, json.dumps(messages), parameters)
    shape = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body.model}
    if body.stream:
        def delta_of(text: str | None) -> Any:
            if text is None:
                return {"role": "assistant", "content": ""}
            return {"delta": {"content": text}} if text else {"delta": {}}

        chunks = _events(request, stream, body, {**shape, "object": "chat.completion.chunk"}, delta_of)
        # the background task also frees the slot when the client leaves before the first chunk
        return StreamingResponse(chunks, media_type="text/event-stream", background=BackgroundTask(stream.cancel))
    text, final = await _collect(request, stream)
    answer = {**shape, "object": "chat.completion", "usage": _usage(final), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text},
         "finish_reason": final.get("finish_reason", "stop")}]}
    return Response(orjson.dumps(answer), media_type="application/json")


@router.post("/v1/completions", response_model=Completion, summary="Text completion (OpenAI format, SSE with stream=true)")
async def completions(request: Request, body: CompletionRequest) -> Response:
    guard_of(request).authorize(request, body.model)
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise BadRequest("send one prompt per request (a list of several prompts is not supported)")
        body.prompt = body.prompt[0]
    _check_input(request, [body.prompt])
    stream = await _open(request, body, body.prompt, _parameters(body, body.max_tokens))
    shape = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body.model}
    prefix = body.prompt if body.echo else ""
    if body.stream:
        def delta_of(text: str | None) -> Any:
            if text is None:
                return None
            return {"text": text, "logprobs": None}

        chunks = _events(request, stream, body, {**shape, "object": "text_completion"}, delta_of)
        # the background task also frees the slot when the client leaves before the first chunk
        return StreamingResponse(chunks, media_type="text/event-stream", background=BackgroundTask(stream.cancel))
    text, final = await _collect(request, stream)
    answer = {**shape, "object": "text_completion", "usage": _usage(final), "choices": [
        {"index": 0, "text": prefix + text, "logprobs": None, "finish_reason": final.get("finish_reason", "stop")}]}
    return Response(orjson.dumps(answer), media_type="application/json")
