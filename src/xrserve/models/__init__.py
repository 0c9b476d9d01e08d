"""Built-in model adapters, one file each. `BUILTIN_MODELS` is the built-in repository."""

from __future__ import annotations

from xrserve.core.config import ModelConfig
from xrserve.models.asr import WhisperTinyEn
from xrserve.models.llm.model import SmolLM2
from xrserve.models.minilm import MiniLM
from xrserve.models.trained import builtin_configs as trained_configs
from xrserve.models.tts import PiperJoe
from xrserve.models.vad import SileroVad
from xrserve.models.vision import vision_configs


def builtin_configs() -> list[ModelConfig]:
    """Configs of the models that ship with the package (fresh copies: loading may fill them in)."""
    return [
        MiniLM.default_config(),
        SmolLM2.default_config(),
        WhisperTinyEn.default_config(),
        PiperJoe.default_config(),
        SileroVad.default_config(),
        *vision_configs(),
        *trained_configs(),
    ]
