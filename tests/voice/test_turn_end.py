"""The end of a turn by meaning (`turn_end: "meaning"`, the default), audio played in real time.

A finished question is taken as soon as its speculative transcript is known, before
`end_of_turn_ms` of silence; an unfinished phrase followed by a pause is not cut off.
Barge-in is tested in test_npc.py (with this rule on, the default).
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from tests.voice.conftest import pcm16_at_16k
from tests.voice.test_npc import HEADER, PERSONA, connect
from xrserve.voice.wer import normalise

pytestmark = pytest.mark.timeout(300)
STEP = 2 * 320  # 20 ms of 16 kHz PCM16 per message, as a microphone sends


def speech_end_s(pcm: bytes) -> float:
    """Where the speech in the audio ends: the last sample above 1% of full scale."""
    samples = np.frombuffer(pcm, "<i2")
    return float(np.nonzero(np.abs(samples) > 327)[0][-1] + 1) / 16000


async def play(ws, channel: int, pcm: bytes, events: list[tuple[float, object]], *, end_turn: bool = False) -> float:
    """Sends `pcm` in real time while recording what arrives; waits for a `turn_end`; returns the start time.

    `end_turn`: the push-to-talk button is released after the audio (an `end_turn` message)."""
    done = asyncio.get_running_loop().create_future()

    async def receive() -> None:
        while True:
            message = await ws.recv()
            event = message if isinstance(message, bytes) else json.loads(message)
            events.append((time.monotonic(), event))
            if isinstance(event, dict) and event["type"] in ("turn_end", "error") and not done.done():
                done.set_result(event)

    receiver = asyncio.create_task(receive())
    start = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), STEP)):
        await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
        await ws.send(HEADER.pack(1, 0, channel, i + 1, time.time() * 1000) + pcm[offset : offset + STEP])
    if end_turn:
        await ws.send(json.dumps({"type": "end_turn", "stream": "npc"}))
    while not done.done():  # a client keeps sending silence until it is answered
        i += 1
        await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
        await ws.send(HEADER.pack(1, 0, channel, i + 1, time.time() * 1000) + bytes(STEP))
    end = await asyncio.wait_for(done, 120)
    await asyncio.sleep(0.3)  # anything that follows the turn_end
    receiver.cancel()
    assert end["type"] == "turn_end", end
    return start


def the_one_turn(events: list[tuple[float, object]], what: str) -> tuple[str, dict]:
    """The transcript and `turn_end` of speech that must make one turn: not cut in two, not interrupted."""
    kinds = [e["type"] for _, e in events if isinstance(e, dict)]
    transcripts = [e["text"] for _, e in events if isinstance(e, dict) and e["type"] == "transcript"]
    end = next(e for _, e in events if isinstance(e, dict) and e["type"] == "turn_end")
    print(f"\n{what}: {transcripts}, ended_by {end['ended_by']}, timings {end['timings']}")
    assert "interrupted" not in kinds and len(transcripts) == 1, transcripts
    assert end["turn"] == 1
    return transcripts[0], end


def test_a_finished_question_is_answered_before_end_of_turn_ms(voice_server, espeak) -> None:
    end_of_turn_ms = 1000  # a margin for a busy machine: the speculative ASR (~0.3 s) must end within 0.8 s

    async def scenario():
        ws, opened = await connect(voice_server, persona=PERSONA, max_tokens=8, seed=3, end_of_turn_ms=end_of_turn_ms)
        assert opened["turn_end"] == "meaning"
        pcm = pcm16_at_16k(espeak("What do you sell?", 160), tail_s=0.5)
        events: list[tuple[float, object]] = []
        async with ws:
            start = await play(ws, opened["channel"], pcm, events)
        return start + speech_end_s(pcm), events

    speech_end, events = asyncio.run(scenario())
    end = next(e for _, e in events if isinstance(e, dict) and e["type"] == "turn_end")
    transcript_at = next(t for t, e in events if isinstance(e, dict) and e["type"] == "transcript")
    print(
        f"\nfinished question: ended_by {end['ended_by']}, timings {end['timings']}, transcript released "
        f"{(transcript_at - speech_end) * 1000:.0f} ms after the end of speech"
    )
    assert {"what", "sell"} <= set(normalise(end["transcript"]))
    assert end["ended_by"] == "finished"
    assert end["timings"]["vad_hangover_ms"] < end_of_turn_ms
    # the silence rule releases nothing before end_of_turn_ms of silence after the speech
    assert transcript_at - speech_end < end_of_turn_ms / 1000
    assert any(isinstance(e, bytes) for _, e in events)


# (first part, speed in wpm, the rest): the first part alone, after a pause, must not be taken as the turn
UNFINISHED = [
    ("I was wondering if", 150, "you could help me with my sword.", {"wondering", "help", "sword"}),
    # whisper-tiny-en writes the trailing "the" as "that": "Tell me more about that." was cut off before issue 16
    ("Tell me more about the", 175, "castle on the hill.", {"tell", "castle", "hill"}),
    # "Can I get some?" was cut off before issue 16
    ("Can I get some", 130, "bread and water?", {"get", "water"}),
    # espeak's own pause at the comma: "Hello?" alone is finished by the first rule, and the question was cut
    # in two when the pause outlasted speculation + ASR (bench/turn_end.py, 15:08); here it may not, so this
    # case guards the rule's result rather than proving it
    ("Hello, who are you?", 130, "", {"hello", "you"}),
    # a subordinate clause alone: "If you could." was cut off before issue 16. The rest has no comma: with
    # "open the gate, I would be grateful." espeak's pause after "gate" gave the finished "If you could, open
    # the gate." and the rule took it (CI, 2026-12-01): a second place to cut, not the one this case guards
    ("If you could", 130, "open the gate for me.", {"could", "gate"}),
]


@pytest.mark.parametrize(("first_part", "wpm", "rest", "words"), UNFINISHED, ids=[u[0] for u in UNFINISHED])
def test_an_unfinished_phrase_and_a_pause_are_not_cut_off(voice_server, espeak, first_part, wpm, rest, words) -> None:
    pause_s = 0.7 if rest else 0.0

    async def scenario():
        ws, opened = await connect(voice_server, persona=PERSONA, max_tokens=8, seed=3)
        first = pcm16_at_16k(espeak(first_part, wpm), lead_s=0.3, tail_s=0.0 if rest else 0.5)
        if rest:
            second = pcm16_at_16k(espeak(rest, wpm), lead_s=0.0, tail_s=0.5)
            pause = bytes(2 * int(pause_s * 16000))
            first = first[: 2 * int(16000 * speech_end_s(first))] + pause + second  # espeak's trailing silence off
        events: list[tuple[float, object]] = []
        async with ws:
            await play(ws, opened["channel"], first, events)
        return events

    transcript, _ = the_one_turn(asyncio.run(scenario()), f"{first_part} + {pause_s} s pause")
    assert words <= set(normalise(transcript)), transcript


def test_silence_rule_on_request(voice_server, espeak) -> None:
    async def scenario():
        ws, opened = await connect(voice_server, persona=PERSONA, max_tokens=4, seed=3, turn_end="silence")
        assert opened["turn_end"] == "silence"
        events: list[tuple[float, object]] = []
        async with ws:
            await play(ws, opened["channel"], pcm16_at_16k(espeak("What do you sell?", 160), tail_s=0.5), events)
        return events

    events = asyncio.run(scenario())
    end = next(e for _, e in events if isinstance(e, dict) and e["type"] == "turn_end")
    assert end["ended_by"] == "silence" and end["timings"]["vad_hangover_ms"] >= 500


def test_push_to_talk_takes_the_turn_at_the_release_whatever_the_pauses(voice_server, espeak) -> None:
    """`turn_end: "client"` (the web client's trigger): a finished sentence and a pause longer than every
    silence rule, then a question, then the release: one turn with both. The default rule would take
    "Hello there." alone and barge in on its answer with the question (CI, 2026-12-01: the VR test's
    transcript was "What is your aim?")."""

    async def scenario():
        ws, opened = await connect(voice_server, persona=PERSONA, max_tokens=4, seed=3, turn_end="client")
        assert opened["turn_end"] == "client" and opened["speculate_ms"] == 100
        first = pcm16_at_16k(espeak("Hello there.", 160), lead_s=0.3, tail_s=0.0)
        second = pcm16_at_16k(espeak("What is your name?", 160), lead_s=0.0, tail_s=0.3)
        pause = bytes(2 * int(1.6 * 16000))  # past end_of_turn_ms (500) and unfinished_turn_ms (1200)
        pcm = first[: 2 * int(16000 * speech_end_s(first))] + pause + second
        events: list[tuple[float, object]] = []
        async with ws:
            await play(ws, opened["channel"], pcm, events, end_turn=True)
        return events

    transcript, end = the_one_turn(asyncio.run(scenario()), "push to talk")
    assert {"hello", "name"} <= set(normalise(transcript)), transcript
    assert end["ended_by"] == "end_turn"
