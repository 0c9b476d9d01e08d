"""TorchScript `.pt` files: inputs passed positionally in declared order."""

from __future__ import annotations

from typing import Any

import numpy as np

from xrserve.core.model import Model


class TorchScriptModel(Model):
    def load(self) -> None:
        import torch

        torch.set_num_threads(self.config.threads)
        self.torch = torch
        self.module = torch.jit.load(str(self.config.weights_path()), map_location="cpu").eval()
        if not self.config.inputs or not self.config.outputs:
            raise ValueError("a TorchScript model.toml must declare its inputs and outputs")
        if any(t.datatype == "BYTES" for t in self.config.inputs + self.config.outputs):
            raise ValueError("TorchScript models cannot take or return BYTES tensors")

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        args = [self.torch.from_numpy(inputs[t.name]) for t in self.config.inputs]
        with self.torch.inference_mode():
            result = self.module(*args)
        if isinstance(result, dict):
            values = [result[t.name] for t in self.config.outputs]
        elif isinstance(result, (tuple, list)):
            values = list(result)
        else:
            values = [result]
        if len(values) != len(self.config.outputs):
            raise ValueError(
                f"the module returned {len(values)} tensors, model.toml declares {len(self.config.outputs)}"
            )
        return {t.name: v.detach().numpy() for t, v in zip(self.config.outputs, values)}
