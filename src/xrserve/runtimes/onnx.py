"""ONNX Runtime: any `.onnx` file, inputs and outputs checked against model.toml at load."""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.model import Model
from xrserve.core.tensors import NUMPY_DTYPES

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxModel(Model):
    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.config.weights_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._check_declared("inputs", self.session.get_inputs())
        self._check_declared("outputs", self.session.get_outputs())
        self._output_names = [t.name for t in self.config.outputs]

    def _check_declared(self, kind: str, graph_tensors: list[Any]) -> None:
        """Fill in undeclared tensors from the graph; reject declarations the graph contradicts."""
        from xrserve.core.config import TensorDecl

        graph = {
            t.name: (_ORT_TYPES.get(t.type, t.type), [d if isinstance(d, int) else -1 for d in t.shape])
            for t in graph_tensors
        }
        declared = getattr(self.config, kind)
        if not declared:
            declared.extend(TensorDecl(name=n, datatype=dt, shape=shape) for n, (dt, shape) in graph.items())
            return
        for tensor in declared:
            if tensor.name not in graph:
                raise ValueError(f"{kind}: '{tensor.name}' is not in the ONNX graph, which has {sorted(graph)}")
            if graph[tensor.name][0] != tensor.datatype:
                raise ValueError(
                    f"{kind}: '{tensor.name}' is {graph[tensor.name][0]} in the ONNX graph, not {tensor.datatype}"
                )

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        feeds = {}
        for spec in self.config.inputs:
            array = inputs[spec.name]
            if spec.datatype == "BYTES":
                array = array.astype(str)
            feeds[spec.name] = array
        results = self.session.run(self._output_names, feeds)
        return {
            name: np.asarray(value, dtype=NUMPY_DTYPES[spec.datatype] if spec.datatype != "BYTES" else object)
            for name, value, spec in zip(self._output_names, results, self.config.outputs)
        }
