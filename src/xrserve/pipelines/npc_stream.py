"""The `npc` session stream: microphone audio in, a talking character out, with barge-in.

The client sends 16 kHz mono PCM16 chunks as binary messages. Voice activity (`silero-vad`,
per-stream state) finds the start and end of each utterance; after `end_of_turn_ms` of
silence the turn is taken and its events are sent (transcript, text deltas, emotion,
`visemes` + binary audio per sentence, `turn_end` with timings).

Speculation: the turn already starts after `speculate_ms` of silence, its events held back
(recognition, the answer and its first speech are computed meanwhile);
if the silence lasts to `end_of_turn_ms` they are released at once, and if the user goes on
talking the speculative turn is cancelled unseen. The hang-over then overlaps recognition
and the first sentence instead of preceding them.

End of turn by meaning (`turn_end: "meaning"`, the default): the speculative turn's transcript
is judged by `voice/turn_end.py` as soon as it is known. A finished sentence ("What do you
sell?") is taken at once, after the speculation's silence; an unfinished one ("I was
wondering if...", or no final punctuation) waits for `unfinished_turn_ms` of silence; an
empty one (a cough) waits `end_of_turn_ms` as before. Until the transcript is known the turn waits for it (its
answer could not go out sooner anyway). `turn_end: "silence"`: `end_of_turn_ms` of silence,
whatever was said. `turn_end: "client"` (push to talk): only the client's `end_turn` takes the
turn, however long the user pauses while holding the button; the speculative turn still starts at
each pause, so a release after a pause is answered from work already done.

Barge-in: speech that starts while the character is answering (generating, or its audio
still playing at the client by the server's clock) cancels the turn (LLM stream, pending
speech) and sends `interrupted`, so the client drops the audio it has queued.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from xrserve.core.errors import BadRequest, validation_problems
from xrserve.core.request import InferenceRequest, Priority
from xrserve.pipelines.npc import MAX_TEXT, Memory, Persona, PersonaOptions, Turn, TurnOptions, npc_models, pipeline_of
from xrserve.pipelines.npc_camera import UserFace, watch_camera
from xrserve.session.protocol import FrameHeader
from xrserve.session.streams import SessionStream, stream_kind
from xrserve.voice.audio import pcm16_to_float
from xrserve.voice.turn_end import Verdict, verdict

RATE = 16_000
CHUNK = 512
CHUNK_MS = CHUNK / RATE * 1000  # 32 ms
MAX_UTTERANCE_S = 30.0  # one Whisper window; longer speech ends the turn there
PRE_ROLL_MS = 300  # audio kept from before the detected start, so the first sound is not clipped
FLAG_FIRST_AUDIO = 1  # binary header flag: the first audio chunk of a turn
# silence before the speculative turn starts, by turn_end: with "meaning" its transcript decides when the turn
# is taken, so it starts at the first silent VAD step (issue 16: 200 -> 100 -> 32 ms, each step that much
# sooner first audio); a pause inside a sentence then costs a cancelled ASR run (~0.25 s of CPU), and a finished
# verdict still waits for the transcript (~0.3 s of silence), so shorter pauses are never cut; with "silence"
# the 500 ms decide anyway; with "client" (push to talk) the release decides, and 100 ms skips most pauses
# between words (each a cancelled ASR run) while a release after a pause still finds the turn computed
SPECULATE_MS = {"meaning": 32.0, "silence": 200.0, "client": 100.0}


class VoiceActivity:
    """Silero probabilities to speech start / pause / end events, with hysteresis."""

    def __init__(self, threshold: float, min_speech_ms: float) -> None:
        self.threshold = threshold
        self.release = max(0.05, threshold - 0.15)
        self.min_speech_chunks = max(1, round(min_speech_ms / CHUNK_MS))
        self.state = np.zeros((2, 128), dtype=np.float32)
        self.context = np.zeros(64, dtype=np.float32)
        self.in_speech = False
        self.voiced_run = 0
        self.silent_run = 0


class NpcOptions(TurnOptions):
    sample_rate: Literal[16000] = Field(
        16000, description="microphone audio: 16 kHz mono PCM16 (resample on the client)"
    )
    persona: PersonaOptions = Field(default_factory=PersonaOptions)
    scene: str = Field("", max_length=MAX_TEXT, description="what the character can see, for its answers")
    end_of_turn_ms: float = Field(500, ge=100, le=5000, description="silence that ends the user's turn")
    speculate_ms: float | None = Field(
        None,
        ge=0,
        le=5000,
        description=(
            "silence after which the turn is already computed, held back until the turn is taken (default "
            "min(32, end_of_turn_ms) with turn_end 'meaning', min(200, end_of_turn_ms) with 'silence', "
            "min(100, end_of_turn_ms) with 'client')"
        ),
    )
    turn_end: Literal["meaning", "silence", "client"] = Field(
        "meaning",
        description=(
            "'meaning': the speculative transcript decides: a finished sentence is taken after speculate_ms of "
            "silence, an unfinished one waits unfinished_turn_ms, an empty one end_of_turn_ms; "
            "'silence': always end_of_turn_ms; 'client' (push to talk): only the client's end_turn takes the "
            "turn, whatever the pauses while the user holds the button"
        ),
    )
    unfinished_turn_ms: float = Field(
        1200,
        ge=100,
        le=5000,
        description="with turn_end 'meaning': silence that ends a turn whose transcript is unfinished (at least "
        "end_of_turn_ms)",
    )
    barge_in: bool = Field(True, description="speech while the character talks interrupts it")
    vad_threshold: float = Field(0.5, ge=0.1, le=0.95)
    min_speech_ms: float = Field(96, ge=32, le=1000)
    models: dict[str, str] = Field(
        default_factory=dict,
        description=("which models play which part, overriding the server's: asr, vad, llm, tts, embeddings"),
    )
    camera_stream: str | None = Field(
        None,
        min_length=1,
        description=(
            "a camera stream of this session that runs face-emotion: the user's facial expression, when seen in "
            "the last 2 s, goes into the character's context for the next turn (nothing of a face is used otherwise)"
        ),
    )


@stream_kind("npc")
class NpcStream(SessionStream):
    """Open with `{"type": "open", "stream": "npc", "kind": "npc", "persona": {...}, "scene": "..."}`."""

    Options = NpcOptions
    options: NpcOptions

    async def open(self) -> dict[str, Any]:
        options = self.options
        if options.speculate_ms is not None and options.speculate_ms > options.end_of_turn_ms:
            raise BadRequest(
                f"option 'speculate_ms' ({options.speculate_ms:g}) must be at most end_of_turn_ms "
                f"({options.end_of_turn_ms:g})"
            )
        self.persona = Persona.from_options(options.persona, options.scene)
        self.turn_options = TurnOptions.model_validate(options.model_dump(include=set(TurnOptions.model_fields)))
        self.end_of_turn_ms = options.end_of_turn_ms
        default_speculate_ms = SPECULATE_MS[options.turn_end]
        self.speculate_ms = (
            min(default_speculate_ms, self.end_of_turn_ms) if options.speculate_ms is None else options.speculate_ms
        )
        self.barge_in = options.barge_in
        self.turn_end = options.turn_end
        self.unfinished_turn_ms = max(options.unfinished_turn_ms, self.end_of_turn_ms)
        self.verdict: Verdict | None = None  # the speculative turn's, once its transcript is known
        self.vad = VoiceActivity(options.vad_threshold, options.min_speech_ms)
        try:
            self.models = npc_models(self.session.app_state, options.models)
        except ValidationError as exc:  # an unknown role or an empty name
            problems = validation_problems(exc, "option 'models': role", "is not a part of a character")
            raise BadRequest(f"{problems}; the parts are asr, vad, llm, tts, embeddings") from None
        for model in self.models.names():
            self.session.authorize(model)
        self.models.check(self.client)  # 404 naming the models here if one is missing
        self.user_face: UserFace | None = None
        if options.camera_stream is not None:  # opt-in: a 400 unless it names an open camera stream with face-emotion
            self.user_face = watch_camera(self.session, options.camera_stream)
        self.pipeline = pipeline_of(self.session.app_state)
        self.memory = Memory()
        self.pending = np.zeros(0, dtype=np.float32)  # samples not yet a whole VAD chunk
        self.utterance: list[np.ndarray] = []
        self.pre_roll: list[np.ndarray] = []
        self.heard_ms = 0.0  # audio received, the stream's own clock
        self.speech_end_ms = 0.0
        self.turn_count = 0
        self.sequence = 0
        self.turn: Turn | None = None
        self.turn_task: asyncio.Task | None = None
        self.confirmed: asyncio.Event | None = None
        self.turn_ended_by: dict[int, str] = {}
        self.playing_until = 0.0  # monotonic time the client's playback of sent audio ends
        return {
            "sample_rate": RATE,
            "end_of_turn_ms": self.end_of_turn_ms,
            "speculate_ms": self.speculate_ms,
            "turn_end": self.turn_end,
            "unfinished_turn_ms": self.unfinished_turn_ms,
            "audio_out": {"encoding": "pcm16", "channels": 1, "sample_rate": 22050},
            "persona": self.persona.name,
        }

    # -- input ---------------------------------------------------------------------------

    async def on_binary(self, header: FrameHeader, payload: memoryview) -> None:
        samples = pcm16_to_float(payload)
        self.pending = np.concatenate([self.pending, samples])
        whole = len(self.pending) // CHUNK
        if not whole:
            return
        chunks = self.pending[: whole * CHUNK].reshape(whole, CHUNK)
        self.pending = self.pending[whole * CHUNK :]
        response = await self.client.submit(
            InferenceRequest(
                self.models.vad,
                {"audio": chunks, "state": self.vad.state, "context": self.vad.context},
                session=self.session.id,
                affinity=self.session.id,
                priority=Priority.INTERACTIVE,
            )
        )
        self.vad.state, self.vad.context = response.outputs["state"], response.outputs["context"]
        for chunk, probability in zip(chunks, response.outputs["probability"]):
            await self._step(chunk, float(probability))

    async def _step(self, chunk: np.ndarray, probability: float) -> None:
        vad = self.vad
        self.heard_ms += CHUNK_MS
        if not vad.in_speech:
            self.pre_roll = (self.pre_roll + [chunk])[-round(PRE_ROLL_MS / CHUNK_MS) :]
            vad.voiced_run = vad.voiced_run + 1 if probability >= vad.threshold else 0
            if vad.voiced_run >= vad.min_speech_chunks:
                vad.in_speech, vad.silent_run = True, 0
                self.utterance, self.pre_roll = list(self.pre_roll), []
                await self._speech_started()
            return
        self.utterance.append(chunk)
        if probability >= vad.release:
            if vad.silent_run and self.confirmed is not None and not self.confirmed.is_set():
                self._cancel_turn()  # the user only paused: the speculative turn is dropped unseen
            vad.silent_run = 0
        else:
            vad.silent_run += 1
            if vad.silent_run == 1:
                self.speech_end_ms = self.heard_ms - CHUNK_MS
        silence_ms = vad.silent_run * CHUNK_MS
        if vad.silent_run and silence_ms >= self.speculate_ms and self.confirmed is None:
            self._start_turn()
        if len(self.utterance) * CHUNK_MS >= MAX_UTTERANCE_S * 1000:
            if self.confirmed is None:
                self._start_turn()
            await self._confirm(silence_ms, "length")
        elif vad.silent_run and silence_ms >= self._silence_needed():
            if self.confirmed is None:
                self._start_turn()
            await self._confirm(silence_ms, "silence" if self.turn_end == "silence" else self.verdict or "timeout")

    def _silence_needed(self) -> float:
        """The silence that ends the turn now: by the rule, with 'meaning' by the speculative transcript, with
        'client' none (only end_turn)."""
        if self.turn_end == "client":
            return math.inf  # a pause while the button is held is the user thinking, not done
        if self.turn_end == "silence" or self.confirmed is None:
            return self.end_of_turn_ms  # "meaning" without a speculative turn (speculate_ms = end_of_turn_ms)
        if self.verdict == "finished":
            return self.speculate_ms
        if self.verdict == "unclear":
            return self.end_of_turn_ms
        return self.unfinished_turn_ms  # unfinished, or not transcribed yet: its answer could not go out anyway

    async def _judge(self, confirmed: asyncio.Event, transcript: str) -> None:
        """The speculative turn's transcript is known: it may end the turn right now."""
        if self.confirmed is not confirmed:
            return  # already taken (or a typed line, or cancelled)
        self.verdict = verdict(transcript)
        silence_ms = self.vad.silent_run * CHUNK_MS
        if self.turn_end == "meaning" and self.vad.silent_run and silence_ms >= self._silence_needed():
            await self._confirm(silence_ms, self.verdict)

    async def _speech_started(self) -> None:
        talking = (self.turn_task is not None and not self.turn_task.done()) or time.monotonic() < self.playing_until
        await self.send("speech_start", at_ms=round(self.heard_ms - self.vad.voiced_run * CHUNK_MS, 1))
        if talking and self.barge_in:
            number = self.turn.number if self.turn else self.turn_count
            self._cancel_turn()
            self.playing_until = 0.0
            await self.send("interrupted", turn=number)

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "end_turn":  # push-to-talk released: take the turn now
            if self.vad.in_speech and self.utterance:
                if self.confirmed is None:
                    self.speech_end_ms = self.heard_ms
                    self._start_turn()
                await self._confirm(self.vad.silent_run * CHUNK_MS, "end_turn")
        elif kind == "say":  # a typed line instead of speech
            text = message.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > 2000:
                raise BadRequest("'say' needs 'text': a non-empty string of at most 2000 characters")
            self._cancel_turn()
            self._start_turn(text=text.strip())
            await self._confirm(0.0, "say")
        elif kind == "context":
            scene = message.get("scene")
            if not isinstance(scene, str) or len(scene) > 2000:
                raise BadRequest("'context' needs 'scene': a string of at most 2000 characters")
            self.persona.scene = scene.strip()
            await self.send("context_set", scene=self.persona.scene)
        elif kind == "reset":
            self.memory = Memory()
            await self.send("reset_done")
        else:
            await super().on_message(message)

    # -- turns ---------------------------------------------------------------------------

    def _start_turn(self, *, text: str | None = None) -> None:
        self.session.check_tokens()  # a key whose LLM tokens are spent gets a 429 instead of a turn
        self.turn_count += 1
        self.confirmed = asyncio.Event()
        self.verdict = None
        self.turn = Turn(self.turn_count, context=self.user_face.context() if self.user_face else [])
        audio = None
        if text is None:
            keep = max(1, len(self.utterance) - self.vad.silent_run + 3)  # end of speech plus ~100 ms
            audio = np.concatenate(self.utterance[:keep]) if self.utterance else np.zeros(CHUNK, np.float32)
        self.turn_started = time.monotonic()
        self.turn_task = self.spawn(
            self._run(self.turn, self.confirmed, audio, text), name=f"npc-turn-{self.turn_count}"
        )

    async def _confirm(self, silence_ms: float, by: str) -> None:
        """Takes the turn; `by`: what ended it (finished, unfinished, unclear, timeout, silence, length, ...)."""
        assert self.confirmed is not None and self.turn is not None
        self.turn_ended_by[self.turn.number] = by
        self.turn.timings["vad_hangover_ms"] = round(silence_ms, 1)
        self.turn.timings["speculative_lead_ms"] = round((time.monotonic() - self.turn_started) * 1000, 1)
        self.confirmed.set()
        self.confirmed = None  # the next utterance starts a new turn
        self.vad.in_speech, self.vad.silent_run, self.vad.voiced_run = False, 0, 0
        self.utterance = []

    def _cancel_turn(self) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            self.turn_task.cancel()
        if self.confirmed is not None and not self.confirmed.is_set():
            self.confirmed = None  # an unconfirmed turn never happened: its number is used again
            self.turn_count -= 1

    async def _run(self, turn: Turn, confirmed: asyncio.Event, audio: np.ndarray | None, text: str | None) -> None:
        """Runs the whole turn at once; its events wait in an outbox until the turn is confirmed.

        So a speculative turn computes recognition, the first sentence and its speech during
        the hang-over, and all of it goes out the moment the silence is long enough.
        """
        outbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

        async def emit(kind: str, **fields: Any) -> None:
            outbox.put_nowait((kind, fields))
            if kind == "transcript" and audio is not None:
                await self._judge(confirmed, fields["text"])

        async def deliver() -> None:
            await confirmed.wait()
            while (item := await outbox.get()) is not None:
                kind, fields = item
                if kind == "speech":
                    await self._send_speech(fields)
                else:
                    await self.send(kind, **fields)

        sender = asyncio.ensure_future(deliver())
        try:
            await self.pipeline.run_turn(
                turn,
                self.memory,
                self.persona,
                self.turn_options,
                emit,
                models=self.models,
                audio=audio,
                text=text,
                session=self.session.id,
                affinity=self.session.id,
                speech_found=True,  # the VAD cut this utterance out as speech: Whisper must not drop it as silence
            )
            outbox.put_nowait(None)
            await sender
            self.memory.add(turn.transcript, turn.answer)
            await self.send(
                "turn_end",
                turn=turn.number,
                transcript=turn.transcript,
                answer=turn.answer,
                emotion=turn.emotion,
                context=turn.context,
                audio_ms=round(turn.audio_ms, 1),
                timings=turn.timings,
                speech_end_ms=round(self.speech_end_ms, 1),
                ended_by=self.turn_ended_by.pop(turn.number, None),
            )
        except asyncio.CancelledError:
            sender.cancel()
            self.turn_ended_by.pop(turn.number, None)
            if confirmed.is_set() and turn.transcript:  # barged in: remember what was actually said
                self.memory.add(turn.transcript, " ".join(turn.spoken) + " ...")
            raise
        finally:
            if confirmed.is_set():  # a speculative turn that never happened is ours to pay for
                self.session.charge_tokens(turn.llm_tokens)

    async def _send_speech(self, fields: dict[str, Any]) -> None:
        pcm: bytes = fields.pop("pcm")
        first = fields["index"] == 0
        self.sequence += 1
        await self.send("visemes", sequence=self.sequence, **fields)
        await self.send_binary(self.sequence, pcm, flags=FLAG_FIRST_AUDIO if first else 0)
        duration_s = fields["duration_ms"] / 1000
        self.playing_until = max(self.playing_until, time.monotonic()) + duration_s

    async def close(self) -> None:
        user_face = getattr(self, "user_face", None)
        if user_face is not None:
            user_face.detach()
        await super().close()
