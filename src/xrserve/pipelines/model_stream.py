"""The `infer` stream kind: any model, called over the session with OIP-shaped JSON tensors.

It lets an XR client reach every model (gesture, embeddings, ...) on the socket it
already has, without a second connection. Requests carry the session id, so the
scheduler can treat them as this session's work.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers

from xrserve.api.controls import deadline_from, priority_from
from xrserve.api.oip_codec import decode_inputs, outputs_as_json
from xrserve.core.errors import BadRequest
from xrserve.core.request import InferenceRequest
from xrserve.session.streams import SessionStream, stream_kind


@stream_kind("infer")
class ModelStream(SessionStream):
    """Open with `{"type": "open", "stream": "s", "kind": "infer", "model": "minilm", "version"?: "1"}`."""

    async def open(self) -> dict[str, Any]:
        model = self.options.get("model")
        if not isinstance(model, str):
            raise BadRequest("an 'infer' stream needs 'model': the name of the model to call")
        version = self.options.get("version")
        if version is not None and not isinstance(version, str):
            raise BadRequest("'version' must be a string such as \"1\"")
        self.session.authorize(model)
        resolved = self.session.scheduler.resolve(model, version)  # 404 with the known models if unknown
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
        request = InferenceRequest(self.model, inputs, version=self.version, parameters=parameters,
                                   session=self.session.id, id=request_id, priority=priority_from(parameters))
        request.deadline = deadline_from(parameters, Headers(), request.arrival)
        self.spawn(self._answer(request))

    async def _answer(self, request: InferenceRequest) -> None:
        started = time.perf_counter()
        try:
            response = await self.session.scheduler.submit(request)
        except Exception as error:  # noqa: BLE001 - answered with the request's id
            await self.session.send_error(error, stream=self.name, request=request.id)
            return
        await self.send("result", id=request.id, model=response.model, version=response.version,
                        outputs=outputs_as_json(response.outputs), server_ms=round((time.perf_counter() - started) * 1000, 3))
