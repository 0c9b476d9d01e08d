"""`silero-vad`: voice activity detection, the Silero VAD ONNX model the `silero-vad` wheel ships.

Silero is recurrent: each 32 ms chunk's probability depends on what came before. The model
holds no per-caller state; the caller (one NPC stream) keeps its own and passes it in and
out, so one loaded model serves every session and sessions never see each other's audio.

Inputs: `audio` FP32 [-1, 512] (consecutive 512-sample chunks at 16 kHz), `state` FP32
[2, 128] (zeros to start) and `context` FP32 [64] (the last 64 samples before the first
chunk; zeros to start). Outputs: `probability` FP32 [-1] (speech probability per chunk),
`state` and `context` to send with the next chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.config import ModelConfig
from xrserve.core.model import Model
from xrserve.models.parameters import NoParameters

CHUNK = 512  # samples per step at 16 kHz (32 ms): what the model was trained on
CONTEXT = 64
STATE_SHAPE = (2, 128)


def model_path() -> str:
    from importlib.resources import files

    return str(files("silero_vad").joinpath("data", "silero_vad.onnx"))


class SileroVad(Model):
    Parameters = NoParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="silero-vad",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Voice activity: Silero VAD (ONNX), 16 kHz, 512-sample chunks, caller-held state",
            inputs=[
                {"name": "audio", "datatype": "FP32", "shape": [-1, CHUNK]},
                {"name": "state", "datatype": "FP32", "shape": list(STATE_SHAPE)},
                {"name": "context", "datatype": "FP32", "shape": [CONTEXT]},
            ],
            outputs=[
                {"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "state", "datatype": "FP32", "shape": list(STATE_SHAPE)},
                {"name": "context", "datatype": "FP32", "shape": [CONTEXT]},
            ],
            # ~0.1 ms per chunk: a worker-process round trip would cost more than the model, and
            # every session calls it every 32 ms. A thread keeps the event loop free; the ONNX
            # file is the one the package ships, with fixed, checked input shapes.
            isolation="thread",
            queue_size=1024,
        )

    def load(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model_path(), options, providers=["CPUExecutionProvider"])
        self.rate = np.array(16000, dtype=np.int64)

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        chunks = inputs["audio"].astype(np.float32, copy=False)
        state = inputs["state"].astype(np.float32).reshape(2, 1, 128)
        context = inputs["context"].astype(np.float32).reshape(1, CONTEXT)
        probabilities = np.empty(len(chunks), dtype=np.float32)
        for i, chunk in enumerate(chunks):
            window = np.concatenate([context, chunk.reshape(1, CHUNK)], axis=1)
            out, state = self.session.run(None, {"input": window, "state": state, "sr": self.rate})
            probabilities[i] = float(np.asarray(out).reshape(-1)[0])
            context = window[:, -CONTEXT:]
        return {"probability": probabilities, "state": state.reshape(STATE_SHAPE), "context": context.reshape(CONTEXT)}
