"""The request parameters each built-in model declares: what passes, and what is refused with which words."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from xrserve.core.model import ModelParameters
from xrserve.models.asr import WhisperTinyEn
from xrserve.models.llm.model import LlamaModel, SmolLM2
from xrserve.models.minilm import MiniLM
from xrserve.models.trained import GestureClassifier, TerrainGAN, TerrainVAE
from xrserve.models.tts import PiperJoe
from xrserve.models.vad import SileroVad
from xrserve.models.vision.face import Face
from xrserve.models.vision.face_emotion import FaceEmotion
from xrserve.models.vision.hands import Hands
from xrserve.models.vision.markers import Markers
from xrserve.models.vision.ocr import OCR
from xrserve.models.vision.pose import Pose
from xrserve.models.vision.segmentation import Segmentation

BUILTINS = [
    WhisperTinyEn,
    SmolLM2,
    LlamaModel,
    MiniLM,
    GestureClassifier,
    TerrainGAN,
    TerrainVAE,
    PiperJoe,
    SileroVad,
    Face,
    FaceEmotion,
    Hands,
    Markers,
    OCR,
    Pose,
    Segmentation,
]


def check(model: type, parameters: dict) -> dict:
    return model.Parameters.model_validate(parameters).model_dump(exclude_unset=True)


def refusal(model: type, parameters: dict) -> str:
    with pytest.raises(ValidationError) as refused:
        check(model, parameters)
    return str(refused.value)


@pytest.mark.parametrize("model", BUILTINS, ids=lambda m: m.__name__)
def test_every_builtin_declares_its_parameters_and_refuses_unknown_ones(model: type) -> None:
    assert issubclass(model.Parameters, ModelParameters)
    assert "Extra inputs are not permitted" in refusal(model, {"no_such_parameter": 1})
    assert check(model, {}) == {}  # nothing sent, nothing handed on: the model keeps its defaults
    for name, field in model.Parameters.model_fields.items():
        assert field.description, f"{model.__name__}.Parameters.{name} has no description"


@pytest.mark.parametrize(
    "parameters, words",
    [
        ({"max_hands": 7}, "1 or 2"),
        ({"max_hands": 0}, "1 or 2"),
        ({"max_hands": "abc"}, "1 or 2"),
        ({"complexity": 5}, "0 or 1"),
        ({"tiles": "yes"}, "boolean"),
    ],
)
def test_hands_parameters(parameters: dict, words: str) -> None:
    message = refusal(Hands, parameters)
    assert next(iter(parameters)) in message and words in message
    assert check(Hands, {"max_hands": 1, "complexity": 0, "tiles": False}) == {
        "max_hands": 1,
        "complexity": 0,
        "tiles": False,
    }


def test_face_emotion_parameters() -> None:
    assert check(FaceEmotion, {"max_faces": 1}) == {"max_faces": 1}
    for bad in (0, 9, "many"):
        assert "max_faces" in refusal(FaceEmotion, {"max_faces": bad})


def test_markers_parameters() -> None:
    intrinsics = {"fx": 800, "fy": 800.0, "cx": 320, "cy": 240.0}
    assert check(Markers, {**intrinsics, "marker_length_m": 0.1}) == {**intrinsics, "marker_length_m": 0.1}
    assert check(Markers, {"dictionary": "DICT_APRILTAG_36h11"}) == {"dictionary": "apriltag_36h11"}
    assert "fx, fy, cx, cy" in refusal(Markers, {"fx": 800})
    assert "greater than 0" in refusal(Markers, {**intrinsics, "cx": -1})
    assert "greater than 0" in refusal(Markers, {"marker_length_m": 0})
    assert "valid number" in refusal(Markers, {"marker_length_m": True})
    assert "4x4_50" in refusal(Markers, {"dictionary": "5x5_7"})  # the allowed names are listed


def test_voice_parameters() -> None:
    assert check(WhisperTinyEn, {"beam_size": 1, "window": "auto", "prompt": "Ahoy", "word_timestamps": True})
    assert "less than or equal to 10" in refusal(WhisperTinyEn, {"beam_size": 11})
    assert "'auto' or 'full'" in refusal(WhisperTinyEn, {"window": "half"})
    assert "'en'" in refusal(WhisperTinyEn, {"language": "fr"})
    assert "2000" in refusal(WhisperTinyEn, {"prompt": "x" * 2001})
    assert check(PiperJoe, {"speed": 2}) == {"speed": 2.0}
    assert "4" in refusal(PiperJoe, {"speed": 5}) and "valid number" in refusal(PiperJoe, {"speed": "fast"})


def test_llm_parameters() -> None:
    good = {
        "input_format": "chat",
        "max_tokens": 8,
        "temperature": 0,
        "top_p": 0.9,
        "top_k": 0,
        "seed": 1,
        "stop": ["\n"],
        "response_format": {"type": "json_schema", "schema": {"type": "object"}},
    }
    assert check(SmolLM2, good) == good
    assert check(SmolLM2, {"stop": "END"}) == {"stop": "END"}
    assert "greater than or equal to 1" in refusal(SmolLM2, {"max_tokens": 0})
    assert "2" in refusal(SmolLM2, {"temperature": 3})
    assert "less than 4294967296" in refusal(SmolLM2, {"seed": 2**32})
    assert "16" in refusal(SmolLM2, {"stop": ["x"] * 17})
    assert "json_schema" in refusal(SmolLM2, {"response_format": {"type": "xml"}})
    assert "json_schema" in refusal(SmolLM2, {"response_format": {"type": "json_schema"}})


def test_terrain_parameters() -> None:
    assert check(TerrainVAE, {"mode": "interpolate", "steps": 4}) == {"mode": "interpolate", "steps": 4}
    assert "interpolate" in refusal(TerrainVAE, {"mode": "blend"})
    assert "256" in refusal(TerrainVAE, {"steps": 1000})
