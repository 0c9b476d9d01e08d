"""Talking characters: end of the user's speech to the first byte of the character's audio (issue 16).

Starts `xrserve serve --dev` with the five models of a voice turn (whisper-tiny-en, silero-vad,
smollm2, piper-joe, minilm) and opens two `npc` streams on one XR session: `today` (the npc
options as they were by default at commit fb346b1: turn_end "silence", end_of_turn_ms 500,
speculate_ms 200) and `new` (the stream's defaults now, or --new). Both get the same questions,
interleaved turn by turn (the stream that goes first alternates), `max_tokens` 48, memory
reset before every turn (the same prompt length every time).

The one metric (the issue's, also used by docs/voice.md):

  speech          a question spoken by espeak-ng (150/160/170 wpm in turn), 16 kHz, with 0.5 s
                  of silence before it; sent in real time in 20 ms PCM16 chunks, followed by
                  silence (as a microphone sends) until the turn has ended
  end of speech   the last sample whose amplitude exceeds 1% of full scale, on the sending clock
  latency         end of speech -> arrival of the first binary audio message of the answer at
                  the client (the answer: the turn whose transcript came last)

For each turn the server's `turn_end` timings give the breakdown: VAD lag (where the server's
VAD put the end of speech, on the stream's audio clock, minus the true end), hang-over (the
silence heard when the turn was taken), ASR, LLM to the first piece, TTS of that piece, and
the server's turn start -> first audio. WER of each pipeline's transcripts against the text;
`cut`: a question taken as two turns (its own pause taken for the end); `gaps > 50 ms`: turns
whose answer a client playing each audio message on arrival would have had to pause for
more than 50 ms in all, waiting for the next piece (a first piece too short for the rest to
be ready behind it). --extra NAME JSON adds more streams (the new options with JSON on top),
interleaved with the others.

Then the models alone through OIP (no pipeline): ASR real-time factor with the short ("auto")
and the full 30 s encoder window, TTS real-time factor and time for one sentence
(--no-models-alone skips it).

    nice .venv/bin/python bench/voice.py                  # 20 turns each, ~6 minutes
    nice .venv/bin/python bench/voice.py --turns 6        # a quick look
    nice .venv/bin/python bench/voice.py --new '{"speculate_ms": 100}'   # try other options

Each turn records the CPU other processes used meanwhile (`*` marks turns beside more than
0.25 cores of foreign load: on 2 cores that alone can double a stage). Results:
bench/results/voice.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))

from llm_support import procs  # noqa: E402 - after the sys.path lines above
from llm_support.voice_turns import turns_over  # noqa: E402

from xrserve.session.protocol import HEADER  # noqa: E402 - the binary message header, as the server reads it
from xrserve.voice.audio import decode_upload  # noqa: E402
from xrserve.voice.wer import wer  # noqa: E402

RESULTS = BENCH / "results" / "voice.json"
MODELS = ("whisper-tiny-en", "silero-vad", "smollm2", "piper-joe", "minilm")
RATE = 16_000
STEP_S = 0.02  # 20 ms chunks
LEAD_S = 0.5
THRESHOLD = 0.01  # end of speech: the last sample above 1% of full scale
SPEEDS = (150, 160, 170)
DISTURBED_CORES = 0.25
GOAL_P50_MS, GOAL_P90_MS, GOAL_RATIO = 500, 700, 1.3
QUESTIONS = (
    "Hello, who are you?",
    "What do you sell here?",
    "Where can I find the blacksmith?",
    "Is the bridge safe to cross tonight?",
    "How much is a loaf of bread?",
    "Have you seen a dragon?",
    "Which way is the harbor?",
    "Can you tell me about the old mill?",
    "Who is the mayor of this town?",
    "Do you have a room for the night?",
    "What is the weather like in the mountains?",
    "Why is the river frozen?",
    "Where did the miller go?",
    "Can I buy a sword from you?",
    "What happened to the castle?",
    "Are there wolves in the forest?",
    "When does the market open?",
    "Do you know a good story?",
    "How far is the next village?",
    "What should I do next?",
)
PERSONA = {"name": "Bob", "description": "the blacksmith of a small mountain village", "style": "gruff but kind"}
#: today's pipeline: the npc defaults of commit fb346b1, spelled out so that later defaults do not change it
#: (first_piece_words came later: 6 is what fb346b1's sentence splitter did)
TODAY = {"turn_end": "silence", "end_of_turn_ms": 500, "speculate_ms": 200, "first_piece_words": 6}
#: the new pipeline: the stream's defaults now
NEW: dict[str, Any] = {}
STAGES = (
    ("vad_lag_ms", "VAD lag"),
    ("vad_hangover_ms", "hang-over"),
    ("asr_ms", "ASR"),
    ("llm_first_sentence_ms", "LLM 1st piece"),
    ("tts_first_ms", "TTS 1st piece"),
    ("first_audio_ms", "server 1st audio"),
)
console = Console(width=None if sys.stdout.isatty() else 160)


def speech(text: str, speed: int, directory: Path) -> tuple[bytes, float]:
    """16 kHz PCM16 of an espeak-ng question after LEAD_S of silence, and where its speech ends, in s."""
    path = directory / f"{abs(hash((text, speed)))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(path), text], check=True)
    audio = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), decode_upload(path.read_bytes())])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    end = int(np.nonzero(np.abs(pcm) > THRESHOLD * 32767)[0][-1]) + 1
    return pcm.tobytes(), end / RATE


class Channel:
    """One `npc` stream of the session: its channel and how much audio it has been sent (its clock)."""

    def __init__(self, name: str, number: int) -> None:
        self.name, self.number, self.sent_samples, self.sequence = name, number, 0, 0


async def turn(ws, channel: Channel, pcm: bytes, speech_end_s: float) -> dict[str, Any]:
    """Plays one question in real time, then silence until its turn has ended; what the client saw."""
    step = int(STEP_S * RATE) * 2
    events: list[tuple[float, dict | None]] = []  # None: a binary (audio) message of this stream
    sizes: dict[float, int] = {}  # arrival -> bytes of PCM16 audio (22050 Hz)
    stream_clock_s = channel.sent_samples / RATE  # where this audio starts on the stream's own clock

    async def receive() -> None:
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                if HEADER.unpack_from(message)[2] == channel.number:
                    arrived = time.monotonic()
                    events.append((arrived, None))
                    sizes[arrived] = len(message) - HEADER.size
                continue
            event = json.loads(message)
            if event.get("stream") == channel.name or event["type"] == "error":
                events.append((time.monotonic(), event))
            if event["type"] == "error":
                raise RuntimeError(event)

    def kinds(kind: str) -> list[dict]:
        return [e for _, e in events if e is not None and e["type"] == kind]

    receiver = asyncio.create_task(receive())
    start, i = time.monotonic(), 0
    audio_end = start + len(pcm) / 2 / RATE
    while not receiver.done():
        offset = i * step
        if offset >= len(pcm):  # a short answer can end before the audio's trailing silence is all sent
            if turns_over(events, start + speech_end_s):
                break
            if time.monotonic() > audio_end + 120:
                raise RuntimeError(f"{channel.name}: no turn_end within 120 s")
        await asyncio.sleep(max(0.0, start + i * STEP_S - time.monotonic()))
        chunk = pcm[offset : offset + step] if offset < len(pcm) else bytes(step)
        channel.sequence += 1
        await ws.send(HEADER.pack(1, 0, channel.number, channel.sequence, time.time() * 1000) + chunk)
        channel.sent_samples += len(chunk) // 2
        i += 1
    await asyncio.sleep(0.05)
    if receiver.done():
        receiver.result()  # its error
    receiver.cancel()
    try:
        await receiver
    except asyncio.CancelledError:
        pass
    transcripts = [(t, e) for t, e in events if e is not None and e["type"] == "transcript"]
    if not transcripts:
        raise RuntimeError(f"{channel.name}: no transcript")
    last_at, last = transcripts[-1]
    first_audio = next((t for t, e in events if e is None and t >= last_at), None)
    end = next(e for e in reversed(kinds("turn_end")) if e["turn"] == last["turn"])
    if first_audio is None:
        raise RuntimeError(f"{channel.name}: the answer had no audio: {end}")
    timings = end["timings"]
    speech_end = start + speech_end_s
    # a client that plays each piece as it comes: silence while it waits for the next one (after the first)
    playing_until, underrun = first_audio, 0.0
    for at in sorted(t for t, e in events if e is None and t >= first_audio):
        underrun += max(0.0, at - playing_until)
        playing_until = max(playing_until, at) + sizes[at] / 2 / 22050
    return {
        "underrun_ms": underrun * 1000,
        "latency_ms": (first_audio - speech_end) * 1000,
        "released_ms": (last_at - speech_end) * 1000,
        "transcript": " ".join(e["text"] for _, e in transcripts),
        "turns": len(transcripts),
        "ended_by": end.get("ended_by"),
        "answer": end["answer"],
        "vad_lag_ms": end["speech_end_ms"] - (stream_clock_s + speech_end_s) * 1000,
        **{key: timings.get(key) for key, _ in STAGES if key != "vad_lag_ms"},
        "speculative_lead_ms": timings.get("speculative_lead_ms"),
    }


async def conversation(
    url: str,
    utterances: list[tuple[str, bytes, float]],
    turns: int,
    variants: dict[str, dict[str, Any]],
    server_pid: int,
    progress: Progress,
) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in variants}
    task = progress.add_task("NPC turns", total=turns * len(variants))
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # hello
        channels = {}
        for name, options in variants.items():
            open_ = {"type": "open", "stream": name, "kind": "npc", "persona": PERSONA, "max_tokens": 48, "seed": 11}
            await ws.send(json.dumps({**open_, **options}))
            opened = json.loads(await ws.recv())
            if opened["type"] != "opened":
                raise RuntimeError(opened)
            channels[name] = Channel(name, opened["channel"])
        for i in range(turns):
            text, pcm, end_s = utterances[i % len(utterances)]
            names = list(variants)
            order = names[i % len(names) :] + names[: i % len(names)]  # who goes first rotates
            for name in order:
                await ws.send(json.dumps({"type": "reset", "stream": name}))  # same prompt length every turn
                while not isinstance(message := await ws.recv(), str) or json.loads(message)["type"] != "reset_done":
                    pass
                window = procs.CpuWindow([server_pid], own=None)
                result = await turn(ws, channels[name], pcm, end_s)
                result.update(question=text, foreign_cores=window.close()["foreign_cores"])
                results[name].append(result)
                progress.advance(task)
                progress.update(task, description=f"NPC turns ({name} {result['latency_ms']:.0f} ms)")
    return results


def models_alone(base: str, utterances: list[tuple[str, bytes, float]]) -> dict[str, float]:
    """ASR and TTS through OIP, no pipeline: real-time factors."""
    out: dict[str, list[float]] = {"asr_auto": [], "asr_full": [], "tts_rtf": [], "tts_first_s": []}
    with httpx.Client(base_url=base, timeout=120) as client:
        for _, pcm, _ in utterances[:6]:
            audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
            for window in ("auto", "full"):
                body = {
                    "inputs": [{"name": "audio", "datatype": "FP32", "shape": [len(audio)], "data": audio.tolist()}],
                    "parameters": {"window": window, "beam_size": 5},
                }
                started = time.perf_counter()
                client.post("/v2/models/whisper-tiny-en/infer", json=body).raise_for_status()
                out[f"asr_{window}"].append((time.perf_counter() - started) / (len(audio) / RATE))
        for text in ("Good day to you, traveller.", "The bridge is safe, but the wolves are hungry tonight."):
            for _ in range(3):
                body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
                started = time.perf_counter()
                reply = client.post("/v2/models/piper-joe/infer", json=body)
                elapsed = time.perf_counter() - started
                reply.raise_for_status()
                outputs = {o["name"]: o for o in reply.json()["outputs"]}
                seconds = outputs["audio"]["shape"][0] / outputs["sample_rate"]["data"][0]
                out["tts_rtf"].append(elapsed / seconds)
                out["tts_first_s"].append(elapsed)
    return {k: statistics.median(v) for k, v in out.items()}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary(rows: list[dict]) -> dict[str, Any]:
    latencies = [r["latency_ms"] for r in rows]
    stages = {}
    for key, _ in STAGES:
        values = [r[key] for r in rows if r.get(key) is not None]
        stages[key] = percentile(values, 50) if values else None
    return {
        "turns": len(rows),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "mean_ms": statistics.mean(latencies) if latencies else float("nan"),
        "wer": wer([r["question"] for r in rows], [r["transcript"] for r in rows]),
        "cut": sum(r["turns"] > 1 for r in rows),
        "underrun_p50_ms": percentile([r["underrun_ms"] for r in rows], 50),
        "underrun_turns": sum(r["underrun_ms"] > 50 for r in rows),
        "disturbed": sum(r["foreign_cores"] > DISTURBED_CORES for r in rows),
        "foreign_cores": statistics.mean(r["foreign_cores"] for r in rows) if rows else 0.0,
        "stages_p50_ms": stages,
        "ended_by": {k: sum(r["ended_by"] == k for r in rows) for k in sorted({str(r["ended_by"]) for r in rows})},
    }


def report(summaries: dict[str, dict], alone: dict[str, float] | None) -> None:
    table = Table(title="End of speech (last sample > 1% FS) -> first binary audio message at the client (ms)")
    columns = ["pipeline", "turns", "p50", "p90", "mean", "WER", "cut", "gaps > 50 ms"]
    columns += [f"{label} p50" for _, label in STAGES] + ["foreign cores"]
    for column in columns:
        table.add_column(column, justify="right")
    for name, s in summaries.items():
        stage_cells = [("-" if s["stages_p50_ms"][k] is None else f"{s['stages_p50_ms'][k]:.0f}") for k, _ in STAGES]
        disturbed = f" ({s['disturbed']}*)" if s["disturbed"] else ""
        table.add_row(
            name,
            str(s["turns"]),
            f"{s['p50_ms']:.0f}",
            f"{s['p90_ms']:.0f}",
            f"{s['mean_ms']:.0f}",
            f"{s['wer']:.3f}",
            str(s["cut"]),
            str(s["underrun_turns"]),
            *stage_cells,
            f"{s['foreign_cores']:.2f}{disturbed}",
        )
    console.print(table)
    if alone is not None:
        alone_table = Table(title="Models alone (OIP, median)")
        for column in ("ASR RTF, auto window", "ASR RTF, full 30 s window", "TTS RTF", "TTS one sentence (s)"):
            alone_table.add_column(column, justify="right")
        alone_table.add_row(
            f"{alone['asr_auto']:.3f}",
            f"{alone['asr_full']:.3f}",
            f"{alone['tts_rtf']:.3f}",
            f"{alone['tts_first_s']:.3f}",
        )
        console.print(alone_table)
    if {"today", "new"} <= set(summaries):
        today, new = summaries["today"], summaries["new"]
        ratio50, ratio90 = today["p50_ms"] / new["p50_ms"], today["p90_ms"] / new["p90_ms"]
        console.print(f"today / new: p50 {ratio50:.2f}x, p90 {ratio90:.2f}x; ended_by new {new['ended_by']}")
        checks = [
            (f"new p50 < {GOAL_P50_MS} ms", new["p50_ms"] < GOAL_P50_MS, f"{new['p50_ms']:.0f}"),
            (f"new p90 < {GOAL_P90_MS} ms", new["p90_ms"] < GOAL_P90_MS, f"{new['p90_ms']:.0f}"),
            (f"p50 >= {GOAL_RATIO}x faster than today", ratio50 >= GOAL_RATIO, f"{ratio50:.2f}x"),
            ("WER no worse than today", new["wer"] <= today["wer"], f"{new['wer']:.3f} vs {today['wer']:.3f}"),
        ]
        for label, met, value in checks:
            console.print(f"goal {label}: [{'green' if met else 'red'}]{'met' if met else 'not met'}[/] ({value})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20, help="turns per pipeline (at least 20 for p90)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log)")
    parser.add_argument("--new", type=json.loads, default={}, help="npc options for the new pipeline (JSON object)")
    parser.add_argument("--only-new", action="store_true", help="the new pipeline alone (a quick look)")
    parser.add_argument(
        "--extra",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "JSON"),
        help="another stream, interleaved with the others: the new pipeline's options with these on top",
    )
    parser.add_argument("--no-models-alone", action="store_true", help="skip the ASR/TTS real-time factors")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is needed to speak the questions (make install installs it)")
    variants = {"new": {**NEW, **args.new}} if args.only_new else {"today": TODAY, "new": {**NEW, **args.new}}
    for name, options in args.extra:
        variants[name] = {**NEW, **args.new, **json.loads(options)}
    tmp = Path(tempfile.mkdtemp(prefix="xrserve-voice-bench-"))
    only = [a for m in MODELS for a in ("--only", m)]
    try:
        server, base = procs.start_xrserve(
            ["--dev", "--data-dir", str(tmp / "data"), *only],
            tmp / "server.log",
            env={"PYTHONPATH": str(ROOT / "src")},
            timeout=300,
        )
    except RuntimeError as exc:
        sys.exit(f"the server did not start: {exc}")
    alone = None
    try:
        utterances = [(q, *speech(q, SPEEDS[n % len(SPEEDS)], tmp)) for n, q in enumerate(QUESTIONS)]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            url = base.replace("http", "ws", 1) + "/v1/session"
            results = asyncio.run(conversation(url, utterances, args.turns, variants, server.pid, progress))
        if not args.no_models_alone:
            alone = models_alone(base, utterances)
    finally:
        procs.end(server)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            console.print(f"kept: {tmp}")
    summaries = {name: summary(rows) for name, rows in results.items()}
    report(summaries, alone)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "metric": "end of speech (last sample > 1% of full scale) -> first binary audio message at the client",
                "chunk_ms": STEP_S * 1000,
                "variants": variants,
                "summary": summaries,
                "turns": results,
                "models_alone": alone,
                "cores": os.cpu_count(),
            },
            indent=1,
        )
    )
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
