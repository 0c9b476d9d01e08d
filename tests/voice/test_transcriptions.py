"""`/v1/audio/transcriptions` with the official `openai` client and with raw multipart: real audio, real model."""

from __future__ import annotations

import io
import subprocess

import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.voice.conftest import ONE_TWO_THREE, SENTENCES, pcm16_at_16k
from xrserve.voice.audio import pcm16_to_float
from xrserve.voice.wer import normalise, wer

pytestmark = pytest.mark.timeout(600)


def transcribe(server, data: bytes, filename: str = "audio.wav", **fields) -> httpx.Response:
    with server.client() as client:
        return client.post(
            "/v1/audio/transcriptions",
            files={"file": (filename, data)},
            data={"model": "whisper-tiny-en", **fields},
            timeout=120,
        )


def test_one_two_three_with_the_openai_client(voice_server) -> None:
    client = openai.OpenAI(base_url=f"{voice_server.url}/v1", api_key=voice_server.admin_key)
    with ONE_TWO_THREE.open("rb") as handle:
        result = client.audio.transcriptions.create(model="whisper-1", file=handle)
    assert normalise(result.text) == ["one", "two", "three"]


def test_espeak_sentences_word_error_rate(voice_server, espeak) -> None:
    hypotheses = [transcribe(voice_server, espeak(s).read_bytes()).json()["text"] for s in SENTENCES]
    rate = wer(list(SENTENCES), hypotheses)
    print(f"\nWER on {len(SENTENCES)} espeak-ng sentences (whisper-tiny-en, beam 5, full window): {rate:.1%}")
    for reference, hypothesis in zip(SENTENCES, hypotheses):
        print(f"  {reference!r} -> {hypothesis!r}")
    assert rate <= 0.12


@pytest.mark.parametrize("codec", ["FLAC", "OGG", "MP3"])
def test_compressed_formats_decode(voice_server, codec: str, tmp_path) -> None:
    audio, rate = soundfile.read(ONE_TWO_THREE, dtype="float32")
    if codec == "MP3":
        path = tmp_path / "a.mp3"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(ONE_TWO_THREE), str(path)], check=True)
        data = path.read_bytes()
    else:
        buffer = io.BytesIO()
        soundfile.write(buffer, audio, rate, format=codec)
        data = buffer.getvalue()
    response = transcribe(voice_server, data, f"a.{codec.lower()}")
    assert response.status_code == 200, response.text
    assert normalise(response.json()["text"]) == ["one", "two", "three"]


def test_verbose_json_has_segments_and_word_times(voice_server, espeak) -> None:
    response = transcribe(
        voice_server,
        espeak(SENTENCES[2]).read_bytes(),
        response_format="verbose_json",
        **{"timestamp_granularities[]": ["word", "segment"]},
    )
    body = response.json()
    assert body["duration"] > 1 and body["segments"] and body["segments"][0]["end"] > body["segments"][0]["start"]
    words = body["words"]
    assert [w["word"].strip(",.?").lower() for w in words][:3] == ["where", "can", "i"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and words[-1]["end"] <= body["duration"] + 0.5


def test_text_format_and_prompt(voice_server) -> None:
    response = transcribe(voice_server, ONE_TWO_THREE.read_bytes(), response_format="text", prompt="Counting: one, two")
    assert response.headers["content-type"].startswith("text/plain")
    assert normalise(response.text) == ["one", "two", "three"]


def wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_bad_audio_gets_clear_errors_and_the_server_lives(voice_server) -> None:
    corrupt = transcribe(voice_server, b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(range(256)) * 40)
    assert corrupt.status_code == 400 and "could not be decoded" in corrupt.json()["error"]["message"]
    empty = transcribe(voice_server, b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    # ten minutes (of near-silence, FLAC: a small upload) is over the documented 300 s limit
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(16000 * 600, np.float32), 16000, format="FLAC")
    long = transcribe(voice_server, buffer.getvalue(), "long.flac")
    assert long.status_code == 413 and "300 s" in long.json()["error"]["message"]
    # only silence (and faint noise): an empty transcript, not words Whisper makes up
    noise = np.random.default_rng(0).normal(0, 0.001, 16000 * 3).astype(np.float32)
    assert transcribe(voice_server, wav(noise, 16000)).json() == {"text": ""}
    # a header that announces the wrong sample rate: decoded as announced, answered, no crash
    audio, rate = soundfile.read(ONE_TWO_THREE, dtype="float32")
    wrong = transcribe(voice_server, wav(audio, rate // 4))
    assert wrong.status_code == 200 and isinstance(wrong.json()["text"], str)
    bad_format = transcribe(voice_server, ONE_TWO_THREE.read_bytes(), response_format="srt")
    assert bad_format.status_code == 400 and "response_format" in bad_format.json()["error"]["message"]
    french = transcribe(voice_server, ONE_TWO_THREE.read_bytes(), language="fr")
    assert french.status_code == 400 and "English" in french.json()["error"]["message"]
    # the server still answers
    assert normalise(transcribe(voice_server, ONE_TWO_THREE.read_bytes()).json()["text"]) == ["one", "two", "three"]


def test_key_without_the_asr_scope_is_refused(voice_server) -> None:
    from tests.conftest import cli

    key = cli(
        "keys", "create", "--scope", "smollm2", "--name", "chat-only", "--quiet", data_dir=voice_server.data_dir
    ).stdout.strip()
    with voice_server.client(key) as client:
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", ONE_TWO_THREE.read_bytes())},
            data={"model": "whisper-tiny-en"},
        )
    assert response.status_code == 403 and "whisper-tiny-en" in response.json()["error"]["message"]


def test_the_short_window_does_not_write_a_question_twice_with_no_repeat_ngram(voice_server, espeak) -> None:
    """The NPC loop's ASR call (short window, `no_repeat_ngram` 4) over OIP; bench/voice.py found these doubled."""

    def infer(text: str, speed: int, no_repeat: int) -> httpx.Response:
        audio = pcm16_to_float(pcm16_at_16k(espeak(text, speed), lead_s=0.3, tail_s=0.1))
        body = {
            "inputs": [{"name": "audio", "datatype": "FP32", "shape": [audio.size], "data": audio.tolist()}],
            "parameters": {"window": "auto", "no_speech_filter": False, "no_repeat_ngram": no_repeat},
        }
        with voice_server.client() as client:
            return client.post("/v2/models/whisper-tiny-en/infer", json=body, timeout=120)

    for text in ("What do you sell here?", "Where did the miller go?"):
        answer = infer(text, 150, 4)
        assert answer.status_code == 200, answer.text
        said = next(o for o in answer.json()["outputs"] if o["name"] == "text")["data"][0]
        words = normalise(said)
        assert 0 < len(words) <= len(normalise(text)) + 1, said  # once, not "What do you sell there? What do ..."
    refused = infer("What do you sell here?", 150, 11)
    assert refused.status_code == 400 and "no_repeat_ngram" in refused.json()["error"], refused.text
