"""The NPC turn over REST: `POST /v1/npc/{conversation}/turn`.

Audio (or a typed line) in; transcript, answer, emotion, WAV and visemes out. A thin
transport over the same `NpcPipeline` the XR session's `npc` stream uses; the
conversation's memory is kept per API key and id in this process.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from xrserve.api.openai_protocol import OPENAI_ERRORS
from xrserve.core.errors import BadRequest
from xrserve.pipelines.npc import ConversationStore, Persona, PersonaOptions, Turn, TurnOptions, npc_models, pipeline_of
from xrserve.security.guard import KeyFirstRoute, guard_of, require_key
from xrserve.voice.audio import decode_upload, wav_bytes

router = APIRouter(  # 401 before the form is read
    tags=["NPC"], responses=OPENAI_ERRORS, dependencies=[Depends(require_key)], route_class=KeyFirstRoute
)

_conversations = ConversationStore()


@router.post(
    "/v1/npc/{conversation}/turn",
    summary="One NPC turn over REST: audio (or text) in; transcript, answer, WAV and visemes out",
)
async def npc_turn(
    request: Request,
    conversation: str,
    file: UploadFile | None = File(None, description="the user's speech: WAV, FLAC, OGG or MP3"),
    text: str | None = Form(None, max_length=2000, description="a typed line instead of speech"),
    name: str | None = Form(None, max_length=100),
    description: str | None = Form(None, max_length=2000),
    style: str | None = Form(None, max_length=500),
    scene: str | None = Form(None, max_length=2000),
    max_tokens: int = Form(64, ge=1, le=256),
    speed: float = Form(1.0, ge=0.25, le=4.0),
    seed: int | None = Form(None, ge=0, lt=2**32),
) -> Response:
    guard = guard_of(request)
    models = npc_models(request.app.state)
    key = guard.authorize(request, models.llm)
    for model in (models.asr, models.tts, models.embeddings):
        guard.authorize(request, model)
    if len(conversation) > 128:
        raise BadRequest("the conversation id is longer than 128 characters")
    if (file is None) == (text is None):
        raise BadRequest("send either 'file' (the user's speech) or 'text' (a typed line), not both or neither")
    # decoding (MP3 included) and resampling stay off the event loop
    audio = await asyncio.to_thread(decode_upload, await file.read()) if file is not None else None
    persona = Persona.from_options(PersonaOptions(name=name, description=description, style=style), scene)
    options = TurnOptions(max_tokens=max_tokens, speed=speed, seed=seed)
    memory = _conversations.get(key.id, conversation)
    pcm: list[bytes] = []
    visemes: list[dict[str, Any]] = []
    rate = 22050

    async def collect(kind: str, **fields: Any) -> None:
        nonlocal rate
        if kind == "speech":
            pcm.append(fields["pcm"])
            visemes.extend(fields["visemes"])
            rate = fields["sample_rate"]

    limits = request.app.state.rate_limits
    limits.check_tokens(key)  # 429 once the key's LLM tokens (--tpm, --tpd) are spent
    turn = Turn(len(memory.turns) + 1)
    try:
        await pipeline_of(request.app.state).run_turn(
            turn,
            memory,
            persona,
            options,
            collect,
            models=models,
            audio=audio,
            text=text,
            session=key.id,
            affinity=f"{key.id}/{conversation}",  # a canary keeps a conversation on one version
        )
    finally:
        limits.charge_tokens(key, turn.llm_tokens)
    memory.add(turn.transcript, turn.answer)
    body = {
        "id": conversation,
        "turn": turn.number,
        "transcript": turn.transcript,
        "answer": turn.answer,
        "emotion": turn.emotion,
        "sentences": turn.spoken,
        "visemes": visemes,
        "audio": {
            "format": "wav",
            "sample_rate": rate,
            "duration_ms": round(turn.audio_ms, 1),
            "base64": base64.b64encode(wav_bytes(b"".join(pcm), rate)).decode(),
        },
        "timings": turn.timings,
    }
    return Response(orjson.dumps(body), media_type="application/json")
