"""`/v1/audio/speech`: Piper's audio, streamed, transcribed back by the server's own ASR."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import openai
import soundfile

from xrserve.voice.wer import wer

TEXT = "Welcome to the old mill. The miller went to the market, but he will be back before dark."


def transcribe(server, data: bytes) -> str:
    with server.client() as client:
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("speech.wav", data)},
            data={"model": "whisper-tiny-en"},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    return response.json()["text"]


def test_speech_transcribed_back_gives_the_text(voice_server) -> None:
    client = openai.OpenAI(base_url=f"{voice_server.url}/v1", api_key=voice_server.admin_key)
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav").content
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert rate == 22050 and len(samples) / rate > 3  # two sentences of speech
    rate_ = wer([TEXT], [transcribe(voice_server, audio)])
    print(f"\nWER of piper-joe speech transcribed by whisper-tiny-en: {rate_:.1%}")
    assert rate_ <= 0.10


def test_body_streams_sentence_by_sentence(voice_server) -> None:
    sizes = []
    with httpx.stream(
        "POST",
        f"{voice_server.url}/v1/audio/speech",
        json={"input": TEXT, "response_format": "pcm"},
        headers={"Authorization": f"Bearer {voice_server.admin_key}"},
        timeout=120,
    ) as response:
        assert response.status_code == 200 and response.headers["x-sample-rate"] == "24000"
        for chunk in response.iter_raw():
            sizes.append(len(chunk))
    assert len(sizes) >= 2  # the first sentence arrived before the second was spoken
    assert sum(sizes) % 2 == 0 and sum(sizes) / 2 / 24000 > 3


def test_speed_makes_shorter_audio(voice_server) -> None:
    def seconds(speed: float) -> float:
        with voice_server.client() as client:
            response = client.post(
                "/v1/audio/speech", json={"input": "Hello there, traveller.", "speed": speed, "response_format": "pcm"}
            )
        assert response.status_code == 200
        return len(response.content) / 2 / 24000

    assert seconds(2.0) < 0.7 * seconds(1.0)


def test_bad_requests(voice_server) -> None:
    with voice_server.client() as client:
        voice = client.post("/v1/audio/speech", json={"input": "hi", "voice": "robot"})
        assert voice.status_code == 400 and "'joe'" in voice.json()["error"]["message"]
        empty = client.post("/v1/audio/speech", json={"input": ""})
        assert empty.status_code == 400
        mp3 = client.post("/v1/audio/speech", json={"input": "hi", "response_format": "mp3"})
        assert mp3.status_code == 400 and "response_format" in mp3.json()["error"]["message"]
        slow = client.post("/v1/audio/speech", json={"input": "hi", "speed": 9})
        assert slow.status_code == 400
        punctuation = client.post("/v1/audio/speech", json={"input": "...", "response_format": "pcm"})
        assert punctuation.status_code in (200, 400)
        controls = client.post("/v1/audio/speech", json={"input": "a\u0000b \u2603", "response_format": "pcm"})
        assert controls.status_code == 200  # NUL is dropped: espeak-ng reads C strings
        body = json.dumps({"input": "a \ud800 b", "response_format": "pcm"})  # a lone surrogate, escaped in JSON
        surrogate = client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
        assert surrogate.status_code in (200, 400), surrogate.text
        ok = client.post("/v1/audio/speech", json={"input": "Still here."})
        assert ok.status_code == 200 and np.frombuffer(ok.content[44:], "<i2").any()
