"""Runtimes turn a `ModelConfig` into a loaded `Model`: ONNX Runtime, TorchScript, Python classes."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from xrserve.core.config import ModelConfig
from xrserve.core.model import Model


def create_model(config: ModelConfig) -> Model:
    """Build (not yet load) the model object a config describes."""
    if config.runtime == "onnx":
        from xrserve.runtimes.onnx import OnnxModel

        return OnnxModel(config)
    if config.runtime == "torchscript":
        from xrserve.runtimes.torchscript import TorchScriptModel

        return TorchScriptModel(config)
    if config.runtime == "gguf":
        from xrserve.models.llm.model import LlamaModel

        return LlamaModel(config)
    return _python_class(config)(config)


def _python_class(config: ModelConfig) -> type[Model]:
    module_name, _, class_name = (config.entrypoint or "").partition(":")
    if module_name.endswith(".py"):
        path = Path(config.directory or ".") / module_name
        unique = f"xrserve_user_{config.name}_{config.version}".replace("-", "_").replace(".", "_")
        spec = importlib.util.spec_from_file_location(unique, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ImportError(f"entrypoint '{config.entrypoint}': '{class_name}' is not a subclass of xrserve.Model")
    return cls
