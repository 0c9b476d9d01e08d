"""Voice fixtures: one private server with the five models a voice turn uses, and speech made by espeak-ng.

The server loads only whisper-tiny-en, piper-joe, silero-vad, smollm2 and minilm: it starts
in seconds, and the voice tests measure the voice models rather than their neighbours.
Speech is generated at test time (the one recording committed is tests/data/speech/one_two_three.wav).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEST_DATA, Server, start_server

VOICE_MODELS = ("whisper-tiny-en", "piper-joe", "silero-vad", "smollm2", "minilm")
ONE_TWO_THREE = TEST_DATA / "speech" / "one_two_three.wav"
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please open the door to the castle.",
    "Where can I find the blacksmith in this village?",
    "The weather is cold and the river is frozen.",
    "I would like to buy a sword and a shield.",
    "Tell me a story about the dragon in the mountains.",
    "My friend is waiting for me at the harbor.",
    "How much gold do you want for this map?",
    "The library closes when the sun goes down.",
    "We need to cross the bridge before night falls.",
)


@pytest.fixture(scope="session")
def voice_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("voice")
    only = [arg for model in VOICE_MODELS for arg in ("--only", model)]
    server = start_server(tmp, *only, "--max-body-mb", "30", admin_key=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def espeak(tmp_path_factory: pytest.TempPathFactory):
    """`espeak(text, speed=150) -> Path` of a 22050 Hz WAV spoken by espeak-ng (cached per text)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (make install installs it)")
    directory = tmp_path_factory.mktemp("espeak")
    made: dict[tuple[str, int], Path] = {}

    def speak(text: str, speed: int = 150) -> Path:
        if (text, speed) not in made:
            path = directory / f"{len(made)}.wav"
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(path), text], check=True, timeout=30
            )
            made[(text, speed)] = path
        return made[(text, speed)]

    return speak


def pcm16_at_16k(path: Path, *, lead_s: float = 0.3, tail_s: float = 1.5) -> bytes:
    """A WAV file as the NPC stream takes audio: 16 kHz mono PCM16, with silence around the speech."""
    from xrserve.voice.audio import decode_upload

    audio = decode_upload(path.read_bytes())
    audio = np.concatenate(
        [np.zeros(int(lead_s * 16000), np.float32), audio, np.zeros(int(tail_s * 16000), np.float32)]
    )
    return (audio * 32767).astype("<i2").tobytes()


__all__ = ["ONE_TWO_THREE", "SENTENCES", "Server", "pcm16_at_16k"]
