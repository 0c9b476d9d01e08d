"""The one model every server in the benchmark runs, so only the serving around it differs.

`LinearModel` wraps an ONNX Runtime session on the exported `torch.nn.Linear`
(x FP32 [-1, 64] -> y FP32 [-1, 16]) with one intra-op thread, the setting xrserve
uses by default, and can sleep a fixed time per call first: the "10 ms model",
whose cost is per batch, not per row, so batching is what decides its throughput.
One instance computes one batch at a time (a lock), as a model that fills the
machine does: MLServer's adaptive batcher starts batches concurrently, and without
the lock its sleeps would overlap as if it ran several instances.
Every peer adapter (xrserve Python model, MLServer runtime, Ray deployment, bare
FastAPI) imports this file from `bench/peers` (on PYTHONPATH) instead of copying it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # the peers' own venvs may lack orjson; the wire format is the same either way
    import orjson

    _loads, _dumps = orjson.loads, orjson.dumps
except ImportError:  # pragma: no cover
    _loads, _dumps = json.loads, lambda doc: json.dumps(doc).encode()

IN_FEATURES = 64
OUT_FEATURES = 16
SLOW_DELAY_S = 0.010


class LinearModel:
    """ONNX Runtime session plus an optional fixed sleep per batch."""

    def __init__(self, onnx_path: str | Path, delay_s: float = 0.0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
        self.delay_s = delay_s
        self._busy = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """y for a batch x; sleeps `delay_s` first, as a model whose compute releases the GIL would."""
        with self._busy:
            if self.delay_s:
                time.sleep(self.delay_s)
            return self.session.run(["y"], {"x": np.asarray(x, dtype=np.float32)})[0]


def decode_oip(body: bytes) -> np.ndarray:
    """The first input tensor of an OIP v2 JSON request, for the peers that have no codec of their own."""
    tensor = _loads(body)["inputs"][0]
    return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])


def encode_oip(model_name: str, y: np.ndarray) -> bytes:
    """An OIP v2 JSON response with the one output `y`."""
    document: dict[str, Any] = {
        "model_name": model_name,
        "outputs": [{"name": "y", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()}],
    }
    return _dumps(document)
