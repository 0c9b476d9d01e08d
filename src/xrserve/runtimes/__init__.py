"""Runtimes turn a `ModelConfig` into a `Model`: ONNX Runtime, TorchScript, llama.cpp (GGUF), Ultralytics YOLO
exports (ONNX), Python classes.

`RUNTIMES` is the registry the server hands to the scheduler (core never imports this package).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from xrserve.core.capabilities import Runtimes
from xrserve.core.config import ModelConfig
from xrserve.core.model import Model


def create_model(config: ModelConfig) -> Model:
    """Build (not yet load) the model object a config describes, in the process that will serve it."""
    if config.runtime == "python":
        return _python_class(config)(config)
    cls = builtin_class(config)
    assert cls is not None
    return cls(config)


def builtin_class(config: ModelConfig) -> type[Model] | None:
    """The class of a model whose code is ours (trusted in the server, for its declared hooks).

    None for a user's `model.py`: that file is only ever imported in a worker process.
    """
    if config.runtime == "onnx":
        from xrserve.runtimes.onnx import OnnxModel

        return OnnxModel
    if config.runtime == "torchscript":
        from xrserve.runtimes.torchscript import TorchScriptModel

        return TorchScriptModel
    if config.runtime == "yolo":
        from xrserve.runtimes.yolo import YoloDetector

        return YoloDetector
    if config.runtime == "gguf":
        from xrserve.models.llm.model import LlamaModel

        return LlamaModel
    if (config.entrypoint or "").startswith("xrserve."):
        return _python_class(config)
    return None


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


RUNTIMES = Runtimes(create=create_model, builtin_class=builtin_class)
