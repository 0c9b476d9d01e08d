"""The NPC turn: speech in, the character's answer out as text, audio, visemes and an emotion.

One turn is a chain of model calls, each through the `InferenceClient`: speech recognition,
the answer streamed from the LLM in the character's persona, cut into sentences as it
streams, each sentence spoken as soon as it is complete, with visemes from the speech
model's own phoneme timing and an emotion label (sentence embeddings, zero-shot). Which
models play those parts is configuration (`NpcModels`: the server's `--npc-model ROLE=NAME`,
and a stream's `models` option), not names in this code; the defaults are the built-ins.
The first spoken piece of an answer is scheduled as `FIRST_SPEECH`, ahead of other
interactive work: it is what the user is waiting for. The transports decide where the
events go: `npc_stream.py` sends them over the XR session as they happen, `api/npc.py`
collects them for `POST /v1/npc/{id}/turn`.

Output moderation applies as for chat: the answer is masked before it is shown or spoken.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xrserve.core.client import InferenceClient
from xrserve.core.errors import BadRequest
from xrserve.core.request import InferenceRequest, Priority
from xrserve.security.moderation import Moderator, StreamMasker
from xrserve.voice.emotion import EmotionClassifier
from xrserve.voice.sentences import SentenceSplitter, speakable
from xrserve.voice.visemes import visemes_from_alignment


class NpcModels(BaseModel):
    """The models a talking character is made of; each must be loaded and covered by the caller's key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    asr: str = Field("whisper-tiny-en", min_length=1, description="speech recognition: audio FP32 16 kHz -> text")
    vad: str = Field("silero-vad", min_length=1, description="voice activity: 512-sample chunks -> probability")
    llm: str = Field("smollm2", min_length=1, description="a streaming chat model (text_input, input_format=chat)")
    tts: str = Field("piper-joe", min_length=1, description="speech: text -> audio, sample_rate, phoneme timing")
    embeddings: str = Field("minilm", min_length=1, description="sentence embeddings for the emotion of a line")

    def names(self) -> list[str]:
        return list(dict.fromkeys(self.model_dump().values()))

    def check(self, client: InferenceClient) -> None:
        """404 naming the loaded models when one of ours is not there; 400 when the LLM cannot stream."""
        for role, name in self.model_dump().items():
            info = client.resolve(name)
            if role == "llm" and not info.capabilities.streaming:
                raise BadRequest(f"'{name}' cannot be the character's LLM: it does not stream its answer")


def npc_models(app_state: Any, overrides: dict[str, str] | None = None) -> NpcModels:
    """The server's choice (`--npc-model ROLE=NAME`, settings.npc_models) with a caller's overrides."""
    settings = getattr(app_state, "settings", None)
    chosen = dict(getattr(settings, "npc_models", None) or {})
    return NpcModels(**{**chosen, **(overrides or {})})


#: The LLM's context per sequence is 2048 tokens: the persona, the memory and the answer share it.
HISTORY_TOKEN_BUDGET = 1200
CHARS_PER_TOKEN = 4  # English with SmolLM2's tokenizer: ~4 characters per token (an estimate, erring long)
MAX_TEXT = 2000

Emit = Callable[..., Awaitable[None]]


class PersonaOptions(BaseModel):
    """Who the character is, as a client describes it (empty fields keep the defaults)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=MAX_TEXT)
    style: str | None = Field(None, max_length=500)


@dataclass
class Persona:
    """Who the character is; rendered into the system prompt."""

    name: str = "Guide"
    description: str = "a friendly guide in a virtual world"
    style: str = "warm and brief"
    scene: str = ""

    @classmethod
    def from_options(cls, persona: PersonaOptions, scene: str | None = None) -> Persona:
        return cls(
            name=(persona.name or "").strip() or cls.name,
            description=(persona.description or "").strip() or cls.description,
            style=(persona.style or "").strip() or cls.style,
            scene=(scene or "").strip(),
        )

    def system_prompt(self, context: Sequence[str] = ()) -> str:
        """`context`: lines for one turn only (what the camera saw of the user: see npc_camera.py)."""
        lines = [
            f"You are {self.name}, {self.description}. You speak {self.style}.",
            (
                "You are talking out loud with a visitor. Answer in one or two short spoken sentences, "
                "in character, with no lists, no markdown and no stage directions."
            ),
        ]
        if self.scene:
            lines.append(f"The scene: {self.scene}")
        lines.extend(context)
        return "\n".join(lines)


@dataclass
class Memory:
    """One conversation's turns, trimmed from the oldest to fit the LLM's context."""

    turns: list[tuple[str, str]] = field(default_factory=list)

    def add(self, user: str, answer: str) -> None:
        if user:
            self.turns.append((user, answer))

    def messages(self, persona: Persona, user: str, context: Sequence[str] = ()) -> list[dict[str, str]]:
        system = persona.system_prompt(context)
        budget = HISTORY_TOKEN_BUDGET * CHARS_PER_TOKEN - len(system) - len(user)
        kept: list[tuple[str, str]] = []
        for turn in reversed(self.turns):
            budget -= len(turn[0]) + len(turn[1]) + 40  # the chat template's tokens per message pair
            if budget < 0:
                break
            kept.append(turn)
        del self.turns[: len(self.turns) - len(kept)]  # forget what no longer fits
        messages = [{"role": "system", "content": system}]
        for question, answer in reversed(kept):
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer or "..."}]
        return messages + [{"role": "user", "content": user}]


class ConversationStore:
    """Memories of REST conversations (`/v1/npc/{id}/turn`), newest kept, per API key."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._memories: OrderedDict[tuple[str, str], Memory] = OrderedDict()

    def get(self, owner: str, conversation: str) -> Memory:
        key = (owner, conversation)
        memory = self._memories.pop(key, None) or Memory()
        self._memories[key] = memory
        while len(self._memories) > self.limit:
            self._memories.popitem(last=False)
        return memory


class TurnOptions(BaseModel):
    """How a turn is answered; a spoken turn is short: 256 tokens is already a minute and a half of speech."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(64, ge=1, le=256)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    speed: float = Field(1.0, ge=0.25, le=4.0, description="speaking rate")
    seed: int | None = Field(None, ge=0, lt=2**32)
    first_piece_words: int = Field(
        3,
        ge=1,
        le=20,
        description=(
            "the answer's first spoken piece is cut after this many words (or at a clause from max(2, n - 2) "
            "words): fewer words, sooner audio (6 before issue 16)"
        ),
    )


@dataclass
class Turn:
    """What one turn produced so far: kept when a barge-in cuts it short."""

    number: int
    transcript: str = ""
    answer: str = ""
    spoken: list[str] = field(default_factory=list)
    emotion: str = "neutral"
    timings: dict[str, float] = field(default_factory=dict)
    audio_ms: float = 0.0  # audio produced, in milliseconds of speech
    started: float = 0.0
    llm_tokens: int = 0  # prompt + completion: what the turn costs the key's token budgets (--tpm, --tpd)
    context: list[str] = field(default_factory=list)  # this turn's lines in the system prompt (the user's face)


class NpcPipeline:
    """Runs turns for any transport; `emit(kind, **fields)` receives the events in order."""

    def __init__(self, client: InferenceClient, moderator: Moderator) -> None:
        self.client = client
        self.moderator = moderator
        self._emotions: dict[str, EmotionClassifier] = {}  # per embedding model: its prototypes, embedded once

    def emotions(self, models: NpcModels) -> EmotionClassifier:
        if models.embeddings not in self._emotions:
            self._emotions[models.embeddings] = EmotionClassifier(self.client, models.embeddings)
        return self._emotions[models.embeddings]

    async def transcribe(
        self,
        audio: np.ndarray,
        session: str | None,
        models: NpcModels,
        affinity: str | None = None,
        speech_found: bool = False,
    ) -> str:
        """`speech_found`: a VAD cut this utterance out as speech, so Whisper's own no-speech guess must not drop it."""
        request = InferenceRequest(
            models.asr,
            {"audio": audio.astype(np.float32, copy=False)},
            # no_repeat_ngram 4: the short window's repeated sentence cost most of the errors (issue 16: WER
            # 0.113 -> 0.071 on bench/voice.py's questions at 150 and 170 wpm, same time)
            parameters={"window": "auto", "beam_size": 5, "no_speech_filter": not speech_found, "no_repeat_ngram": 4},
            session=session,
            affinity=affinity,
            priority=Priority.INTERACTIVE,
        )
        response = await self.client.submit(request)
        return response.outputs["text"].reshape(-1)[0].decode("utf-8", "replace").strip()

    async def speak(
        self,
        text: str,
        speed: float,
        session: str | None,
        offset_ms: float,
        models: NpcModels,
        priority: Priority = Priority.INTERACTIVE,
        affinity: str | None = None,
    ) -> tuple[bytes, int, list[dict[str, Any]]]:
        request = InferenceRequest(
            models.tts,
            {"text": np.array([speakable(text).encode()], dtype=object)},
            parameters={"speed": speed} if speed != 1.0 else {},
            session=session,
            affinity=affinity,
            priority=priority,
        )
        out = (await self.client.submit(request)).outputs
        rate = int(out["sample_rate"].reshape(-1)[0])
        phonemes = [p.decode("utf-8", "replace") for p in out["phonemes"].reshape(-1)]
        visemes = visemes_from_alignment(phonemes, out["phoneme_samples"].reshape(-1).tolist(), rate, offset_ms)
        return out["audio"].astype("<i2", copy=False).tobytes(), rate, visemes

    async def run_turn(
        self,
        turn: Turn,
        memory: Memory,
        persona: Persona,
        options: TurnOptions,
        emit: Emit,
        *,
        models: NpcModels,
        audio: np.ndarray | None = None,
        text: str | None = None,
        session: str | None = None,
        affinity: str | None = None,
        speech_found: bool = False,
    ) -> Turn:
        """One turn, from audio (transcribed first) or from text. Cancelling it stops every stage.

        `affinity` (a session's or a conversation's id) keeps the turn's models on one version
        while a canary runs, so a character's voice and mind do not change mid-conversation.
        `speech_found`: the audio is an utterance a VAD found (the `npc` stream), not any upload.
        """
        started = turn.started = time.monotonic()
        if audio is not None:
            turn.transcript = await self.transcribe(audio, session, models, affinity, speech_found)
            turn.timings["asr_ms"] = _ms(started)
        else:
            turn.transcript = (text or "").strip()
        await emit(
            "transcript",
            turn=turn.number,
            text=turn.transcript,
            audio_ms=round(len(audio) / 16, 1) if audio is not None else None,
        )
        if not turn.transcript:
            turn.timings["total_ms"] = _ms(started)
            return turn
        llm_started = time.monotonic()
        messages = memory.messages(persona, turn.transcript, turn.context)
        parameters: dict[str, Any] = {
            "input_format": "chat",
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "stop": ["\nUser:", "<|im_end|>"],
        }
        if options.seed is not None:
            parameters["seed"] = options.seed
        stream = await self.client.stream(
            InferenceRequest(
                models.llm,
                {"text_input": np.array([json.dumps(messages).encode()], dtype=object)},
                parameters=parameters,
                session=session,
                priority=Priority.INTERACTIVE,
                affinity=affinity,
            )
        )
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak_pieces(turn, pieces, options, emit, session, models, affinity))
        masker, splitter = StreamMasker(self.moderator), SentenceSplitter(first_words=options.first_piece_words)
        deltas = 0
        try:
            async for chunk in stream:
                if speaker.done():
                    speaker.result()  # the speech failed (its model crashed): the turn ends now, not when the LLM does
                if chunk["kind"] != "delta":
                    continue
                deltas += 1
                shown = masker.feed(chunk.get("text", ""))
                if shown:
                    await self._answer_text(turn, shown, splitter, pieces, emit, llm_started)
            rest = masker.flush()
            if rest:
                await self._answer_text(turn, rest, splitter, pieces, emit, llm_started)
            last = splitter.flush()
            if last:
                turn.timings.setdefault("llm_first_sentence_ms", _ms(llm_started))  # a one-piece answer
                pieces.put_nowait(last)
            turn.timings["llm_ms"] = _ms(llm_started)
            pieces.put_nowait(None)
            await speaker
        finally:
            stream.cancel()
            if not speaker.done():
                speaker.cancel()
            # a cut-short stream has no usage yet: its prompt and at least a token per delta were computed
            turn.llm_tokens = (stream.usage.prompt_tokens or len(json.dumps(messages)) // 4) + max(
                stream.usage.completion_tokens, deltas
            )
        turn.emotion, _ = await self.emotions(models).classify(turn.answer, session)
        turn.timings["total_ms"] = _ms(started)
        return turn

    async def _answer_text(
        self, turn: Turn, text: str, splitter: SentenceSplitter, pieces: asyncio.Queue, emit: Emit, llm_started: float
    ) -> None:
        turn.answer += text
        await emit("delta", turn=turn.number, text=text)
        for piece in splitter.feed(text):
            if "llm_first_sentence_ms" not in turn.timings:
                turn.timings["llm_first_sentence_ms"] = _ms(llm_started)
            pieces.put_nowait(piece)

    async def _speak_pieces(
        self,
        turn: Turn,
        pieces: asyncio.Queue,
        options: TurnOptions,
        emit: Emit,
        session: str | None,
        models: NpcModels,
        affinity: str | None,
    ) -> None:
        """Speaks the pieces in order while the LLM goes on writing; the first one also sets the emotion.

        The first piece's emotion is classified after its speech is sent, not beside it: on two
        cores the embedding model and Piper slowed each other, and the first audio came ~85 ms
        later (issue 16; TTS of a 3-word piece 207 -> 120 ms). The face then turns ~50 ms after
        the first sound, while that piece plays for about a second.
        """
        index = 0
        while (piece := await pieces.get()) is not None:
            speaking = time.monotonic()
            first = Priority.FIRST_SPEECH if index == 0 else Priority.INTERACTIVE
            pcm, rate, visemes = await self.speak(piece, options.speed, session, turn.audio_ms, models, first, affinity)
            if index == 0:
                turn.timings["tts_first_ms"] = _ms(speaking)
                turn.timings["first_audio_ms"] = _ms(turn.started)
            duration_ms = len(pcm) / 2 / rate * 1000
            await emit(
                "speech",
                turn=turn.number,
                index=index,
                text=piece,
                pcm=pcm,
                sample_rate=rate,
                offset_ms=round(turn.audio_ms, 1),
                duration_ms=round(duration_ms, 1),
                visemes=visemes,
            )
            turn.spoken.append(piece)
            turn.audio_ms += duration_ms
            if index == 0:
                turn.emotion, scores = await self.emotions(models).classify(piece, session)
                await emit("emotion", turn=turn.number, emotion=turn.emotion, scores=scores)
            index += 1


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


def pipeline_of(app_state: Any) -> NpcPipeline:
    """The one pipeline of a server (the emotion prototypes are embedded once)."""
    pipeline = getattr(app_state, "npc_pipeline", None)
    if pipeline is None:
        pipeline = NpcPipeline(app_state.scheduler, app_state.moderator)
        app_state.npc_pipeline = pipeline
    return pipeline
