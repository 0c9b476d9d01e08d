"""Audio routes in OpenAI's format: `/v1/audio/transcriptions` and `/v1/audio/speech`.

Thin transports: uploads are decoded here (`voice/audio.py`) and the models are reached only
through the scheduler. The NPC turn over REST is `api/npc.py`.
OpenAI's model and voice names are accepted as aliases of the built-in models, so code
written for OpenAI runs unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from xrserve.api.openai_protocol import (
    OPENAI_ERRORS,
    Transcription,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from xrserve.core.errors import BadRequest, XRServeError
from xrserve.core.request import InferenceRequest, Priority
from xrserve.pipelines.npc import npc_models
from xrserve.security.guard import KeyFirstRoute, guard_of, require_key
from xrserve.voice.audio import decode_upload, resample, wav_header
from xrserve.voice.sentences import speakable, split_sentences

log = logging.getLogger("xrserve.audio")
# a key is checked before the body is (401 before 400); the model's scope once the body names the model
router = APIRouter(
    tags=["Audio"], responses=OPENAI_ERRORS, dependencies=[Depends(require_key)], route_class=KeyFirstRoute
)

#: OpenAI's model names, served by the server's speech models (`--npc-model asr=... / tts=...`)
ASR_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
VOICES = ("joe", "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
OPENAI_PCM_RATE = 24_000  # what OpenAI clients play `pcm` at
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
VAD_SPEECH = 0.5


def _scheduler(request: Request) -> Any:
    return request.app.state.scheduler


async def _has_speech(request: Request, audio: np.ndarray) -> bool:
    """Whisper invents words for pure silence or noise ("you", "Thank you."): ask the VAD first."""
    chunks = len(audio) // 512
    if not chunks:
        return False
    response = await _scheduler(request).submit(
        InferenceRequest(
            npc_models(request.app.state).vad,
            {
                "audio": audio[: chunks * 512].reshape(chunks, 512),
                "state": np.zeros((2, 128), np.float32),
                "context": np.zeros(64, np.float32),
            },
            priority=Priority.INTERACTIVE,
        )
    )
    return bool((response.outputs["probability"] >= VAD_SPEECH).any())


async def _read_audio(file: UploadFile) -> np.ndarray:
    data = await file.read()
    return await asyncio.to_thread(decode_upload, data)  # MP3 decoding and resampling stay off the event loop


@router.post(
    "/v1/audio/transcriptions",
    summary="Speech to text (OpenAI format)",
    response_model=Transcription | TranscriptionVerbose,
    responses={
        200: {
            "description": "response_format json: {text}; verbose_json: with duration, segments "
            "and words; text: the transcript as plain text",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def transcriptions(
    request: Request,
    file: UploadFile = File(description="WAV, FLAC, OGG or MP3, at most 25 MiB and 300 s"),
    model: str = Form("whisper-tiny-en"),
    # the enums are documented here and checked below, with messages that say what to send instead
    language: str | None = Form(None, description="English only", json_schema_extra={"enum": ["en", "english", ""]}),
    prompt: str | None = Form(None, max_length=2000),
    response_format: str = Form("json", json_schema_extra={"enum": list(TRANSCRIPT_FORMATS)}),
    temperature: float = Form(0.0, ge=0.0, le=1.0),
    timestamp_granularities: list[str] | None = Form(
        None, alias="timestamp_granularities[]", json_schema_extra={"items": {"enum": ["word", "segment"]}}
    ),
) -> Response:
    name = npc_models(request.app.state).asr if model in ASR_ALIASES else model
    guard_of(request).authorize(request, name)
    guard_of(request).authorize(request, npc_models(request.app.state).vad)
    if response_format not in TRANSCRIPT_FORMATS:
        raise BadRequest(
            f"response_format '{response_format}' is not supported; use one of {', '.join(TRANSCRIPT_FORMATS)}"
        )
    if language not in (None, "", "en", "english"):
        raise BadRequest(f"language '{language}' is not supported: {name} knows English only ('en')")
    granularities = set(timestamp_granularities or ["segment"])
    if not granularities <= {"word", "segment"}:
        raise BadRequest("timestamp_granularities[] takes 'word' and/or 'segment'")
    _scheduler(request).resolve(name)
    audio = await _read_audio(file)
    started = time.monotonic()
    text, segments = "", []
    if await _has_speech(request, audio):
        response = await _scheduler(request).submit(
            InferenceRequest(
                name,
                {"audio": audio},
                priority=Priority.INTERACTIVE,
                session=request.scope.get("xrserve.key_id"),
                parameters={
                    "beam_size": 5,
                    "window": "full",
                    "prompt": prompt or "",
                    "word_timestamps": response_format == "verbose_json" and "word" in granularities,
                },
            )
        )
        text = response.outputs["text"].reshape(-1)[0].decode("utf-8", "replace")
        segments = json.loads(response.outputs["segments"].reshape(-1)[0])
    request.scope["xrserve.note"] = f"audio {len(audio) / 16000:.1f} s, {time.monotonic() - started:.2f} s"
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "json":
        return Response(Transcription(text=text).model_dump_json(), media_type="application/json")
    body = TranscriptionVerbose(language="english", duration=round(len(audio) / 16000, 3), text=text)
    if "segment" in granularities:
        body.segments = [
            TranscriptionSegment(
                id=i,
                start=s["start"],
                end=s["end"],
                text=s["text"],
                temperature=temperature,
                avg_logprob=s["avg_logprob"],
                no_speech_prob=s["no_speech_prob"],
            )
            for i, s in enumerate(segments)
        ]
    if "word" in granularities:
        body.words = [TranscriptionWord(**w) for s in segments for w in s.get("words", [])]
    return Response(body.model_dump_json(), media_type="application/json")


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "piper-joe"
    input: str = Field(min_length=1, max_length=4096)
    voice: str = "joe"
    response_format: Literal["wav", "pcm"] = Field(
        "wav", description="wav: PCM16 mono at the voice's 22050 Hz; pcm: raw PCM16 mono at 24 kHz as OpenAI sends"
    )
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None


async def _synthesise(request: Request, model: str, text: str, speed: float) -> tuple[np.ndarray, int]:
    response = await _scheduler(request).submit(
        InferenceRequest(
            model,
            {"text": np.array([text.encode()], dtype=object)},
            priority=Priority.INTERACTIVE,
            parameters={"speed": speed} if speed != 1.0 else {},
            session=request.scope.get("xrserve.key_id"),
        )
    )
    return response.outputs["audio"].astype("<i2", copy=False), int(response.outputs["sample_rate"].reshape(-1)[0])


@router.post(
    "/v1/audio/speech",
    summary="Text to speech (OpenAI format); the body streams sentence by sentence",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}, "audio/pcm": {}}}},
)
async def speech(request: Request, body: SpeechRequest) -> Response:
    model = npc_models(request.app.state).tts if body.model in TTS_ALIASES else body.model
    guard_of(request).authorize(request, model)
    if body.voice not in VOICES:
        raise BadRequest(
            f"voice '{body.voice}' is not available; use 'joe' (OpenAI's voice names are accepted "
            f"and speak with it too: {', '.join(VOICES[1:])})"
        )
    sentences = split_sentences(speakable(body.input))
    if not sentences:
        raise BadRequest("'input' has nothing to say; send some text")
    # the first sentence before the response starts, so that a failure is still an HTTP status
    first, rate = await _synthesise(request, model, sentences[0], body.speed)

    def encode(pcm: np.ndarray) -> bytes:
        if body.response_format == "pcm":
            floats = resample(pcm.astype(np.float32) / 32768.0, rate, OPENAI_PCM_RATE)
            return (np.clip(floats, -1, 1) * 32767).astype("<i2").tobytes()
        return pcm.tobytes()

    async def chunks() -> AsyncIterator[bytes]:
        if body.response_format == "wav":
            yield wav_header(rate)  # length unknown while streaming, as OpenAI's own WAV stream
        yield encode(first)
        for sentence in sentences[1:]:
            try:
                pcm, _ = await _synthesise(request, model, sentence, body.speed)
            except XRServeError as error:  # the status has been sent: end the body early, say why in the log
                log.warning("speech stream ended early: %s", error.message)
                return
            yield encode(pcm)

    media = "audio/wav" if body.response_format == "wav" else "audio/pcm"
    headers = {"X-Sample-Rate": str(rate if body.response_format == "wav" else OPENAI_PCM_RATE)}
    return StreamingResponse(chunks(), media_type=media, headers=headers)
