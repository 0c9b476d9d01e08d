"""MLServer custom runtime for both benchmark models (MLServer imports it from the repository root).

`parameters.uri` names the ONNX file and `parameters.extra.delay_ms` the fixed sleep
(0 for the plain linear model, 10 for the 10 ms model). The compute runs in a thread
with `asyncio.to_thread`, as it does off the event loop in xrserve and Ray Serve, so
the 10 ms sleep does not stop the server from reading the next requests.
"""

from __future__ import annotations

import asyncio

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from tinymodel import LinearModel


class LinearRuntime(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self.model = LinearModel(await get_model_uri(self.settings), extra.get("delay_ms", 0) / 1000)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = await asyncio.to_thread(self.model, x) if self.model.delay_s else self.model(x)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
