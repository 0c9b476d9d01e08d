"""The `infer` stream kind: any model, called over the session with OIP-shaped JSON tensors.

It lets an XR client reach every model (gesture, embeddings, ...) on the socket it
already has, without a second connection. Requests carry the session id, so the
scheduler can treat them as this session's work.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from xrserve.core.codec import decode_inputs, outputs_as_json
from xrserve.core.controls import deadline_from, priority_from
from xrserve.core.errors import BadRequest
from xrserve.core.request import InferenceRequest
from xrserve.session.streams import SessionStream, StreamOptions, stream_kind


class InferOptions(StreamOptions):
    model: str = Field(min_length=1, description="the name of the model to call")
    version: str | None = Field(default=None, pattern=r"^[0-9]+$", description='a version such as "1"')


@stream_kind("infer")
class ModelStream(SessionStream):
    """Open with `{"type": "open", "stream": "s", "kind": "infer", "model": "minilm", "version"?: "1"}`."""

    Options = InferOptions
    options: InferOptions

    async def open(self) -> dict[str, Any]:
        model, version = self.options.model, self.options.version
        self.session.authorize(model)
        resolved = self.client.resolve(model, version, self.session.id)  # 404 naming the known models
        self.model, self.version = model, version
        return {"model": model, "version": resolved.version}

    async def on_message(self, message: dict[str, Any]) -> None:
        if message["type"] != "infer":
            return await super().on_message(message)
        request_id = message.get("id", "")
        if not isinstance(request_id, str):
            raise BadRequest("'id' must be a string")
        inputs = decode_inputs(message, memoryview(b""))
        parameters = message.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest("'parameters' must be an object")
        request = InferenceRequest(
            self.model,
            inputs,
            version=self.version,
            parameters=parameters,
            session=self.session.id,
            affinity=self.session.id,  # a canary keeps the session on one version
            id=request_id,
            priority=priority_from(parameters),
        )
        request.deadline = deadline_from(parameters, None, request.arrival)
        self.spawn(self._answer(request))

    async def _answer(self, request: InferenceRequest) -> None:
        started = time.perf_counter()
        try:
            response = await self.client.submit(request)
        except Exception as error:  # noqa: BLE001 - answered with the request's id
            await self.session.send_error(error, stream=self.name, request=request.id)
            return
        await self.send(
            "result",
            id=request.id,
            model=response.model,
            version=response.version,
            outputs=outputs_as_json(response.outputs),
            server_ms=round((time.perf_counter() - started) * 1000, 3),
        )
