"""Talking characters: end of the user's speech to the first byte of the character's audio.

Starts `xrserve serve --dev` with the five models of a voice turn (whisper-tiny-en, silero-vad,
smollm2, piper-joe, minilm), then plays spoken questions (espeak-ng, 20 by default) into an
`npc` stream over the XR session WebSocket, in real time (32 ms chunks on a fixed schedule,
as a microphone would), each followed by silence. For every turn:

  end of speech   taken from the audio itself: the end of the last 10 ms frame louder than
                  -35 dB below the utterance's peak, on the sending schedule's clock
  first audio     arrival of the first binary audio message of the turn at the client
  latency         first audio - end of speech: what the user waits for

and the server's own breakdown from `turn_end`: VAD hang-over (silence waited before the turn
is taken), ASR, LLM time to the first complete sentence (or clause), TTS of that first piece.
Two variants side by side, turn by turn alternating: `speculative` (the default: the turn
starts after 200 ms of silence, its output held until the 500 ms hang-over confirms it) and
`plain` (speculate_ms = end_of_turn_ms: nothing starts before the hang-over ends).

Then the models alone through OIP (no pipeline): ASR real-time factor (compute / audio) with
the short ("auto") and the full 30 s encoder window, and TTS real-time factor and time to
first audio for one sentence.

    nice .venv/bin/python bench/voice.py                  # ~8 minutes on a quiet machine
    nice .venv/bin/python bench/voice.py --turns 6        # a quick look

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
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "src"))

from llm_support import procs  # noqa: E402 - after the sys.path lines above

from xrserve.voice.audio import decode_upload  # noqa: E402

RESULTS = BENCH / "results" / "voice.json"
MODELS = ("whisper-tiny-en", "silero-vad", "smollm2", "piper-joe", "minilm")
HEADER = struct.Struct("<BBHId")
RATE = 16_000
CHUNK_S = 0.032
DISTURBED_CORES = 0.25
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
VARIANTS = {
    "speculative": {"end_of_turn_ms": 500, "speculate_ms": 200},
    "plain": {"end_of_turn_ms": 500, "speculate_ms": 500},
}
console = Console(width=None if sys.stdout.isatty() else 150)


def speech(text: str, directory: Path) -> tuple[bytes, float]:
    """16 kHz PCM16 of an espeak-ng question (0.3 s lead, 1.2 s tail) and where its speech ends, in s."""
    path = directory / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
    audio = decode_upload(path.read_bytes())
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    last = int(np.nonzero(level > level.max() - 35)[0][-1])
    lead = 0.3
    padded = np.concatenate([np.zeros(int(lead * RATE), np.float32), audio, np.zeros(int(1.2 * RATE), np.float32)])
    return (padded * 32767).astype("<i2").tobytes(), lead + (last + 1) * 160 / RATE


async def turn(ws, channel: int, pcm: bytes, speech_end_s: float) -> dict:
    """Play one utterance in real time; wait for the turn's end; return the client's and server's timings."""
    step = int(CHUNK_S * RATE) * 2
    first_audio: float | None = None
    done = asyncio.get_running_loop().create_future()

    async def receive() -> None:
        nonlocal first_audio
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                if first_audio is None:
                    first_audio = time.monotonic()
                continue
            event = json.loads(message)
            if event["type"] in ("turn_end", "error"):
                done.set_result(event)
                return

    receiver = asyncio.create_task(receive())
    start = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, start + i * CHUNK_S - time.monotonic()))
        await ws.send(HEADER.pack(1, 0, channel, i, time.time() * 1000) + pcm[offset : offset + step])
    end = await asyncio.wait_for(done, 180)
    await receiver
    if end["type"] == "error" or first_audio is None:
        raise RuntimeError(f"turn failed: {end}")
    timings = end["timings"]
    return {
        "latency_ms": (first_audio - (start + speech_end_s)) * 1000,
        "transcript": end["transcript"],
        "answer": end["answer"],
        **{
            k: timings.get(k)
            for k in (
                "vad_hangover_ms",
                "speculative_lead_ms",
                "asr_ms",
                "llm_first_sentence_ms",
                "tts_first_ms",
                "first_audio_ms",
            )
        },
        "server_speech_end_ms": end.get("speech_end_ms"),
        "audio_speech_end_ms": speech_end_s * 1000,
    }


async def conversation(
    url: str, utterances: list[tuple[bytes, float]], turns: int, server_pid: int, progress: Progress
) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    task = progress.add_task("NPC turns", total=turns * len(VARIANTS))
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # hello
        channels = {}
        for name, options in VARIANTS.items():
            await ws.send(
                json.dumps(
                    {
                        "type": "open",
                        "stream": name,
                        "kind": "npc",
                        "persona": PERSONA,
                        "max_tokens": 48,
                        "seed": 11,
                        **options,
                    }
                )
            )
            opened = json.loads(await ws.recv())
            if opened["type"] != "opened":
                raise RuntimeError(opened)
            channels[name] = opened["channel"]
        for i in range(turns):
            pcm, end_s = utterances[i % len(utterances)]
            order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))  # alternate who goes first
            for name in order:
                await ws.send(json.dumps({"type": "reset", "stream": name}))  # same prompt length every turn
                window = procs.CpuWindow([server_pid], own=None)
                result = await turn(ws, channels[name], pcm, end_s)
                result["foreign_cores"] = window.close()["foreign_cores"]
                results[name].append(result)
                progress.advance(task)
    return results


def models_alone(base: str, utterances: list[tuple[bytes, float]]) -> dict[str, float]:
    """ASR and TTS through OIP, no pipeline: real-time factors."""
    out: dict[str, list[float]] = {"asr_auto": [], "asr_full": [], "tts_rtf": [], "tts_first_s": []}
    with httpx.Client(base_url=base, timeout=120) as client:
        for pcm, _ in utterances[:8]:
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


def report(results: dict[str, list[dict]], alone: dict[str, float]) -> None:
    table = Table(title="End of user speech -> first byte of NPC audio at the client (ms)")
    for column in (
        "variant",
        "turns",
        "p50",
        "p90",
        "VAD hang-over p50",
        "speculative lead p50",
        "ASR p50",
        "LLM 1st sentence p50",
        "TTS 1st piece p50",
        "server 1st audio p50",
        "disturbed",
    ):
        table.add_column(column, justify="right")
    for name, turns in results.items():

        def p50(key: str, turns: list[dict] = turns) -> str:
            values = [t[key] for t in turns if t.get(key) is not None]
            return f"{percentile(values, 50):.0f}" if values else "-"

        latencies = [t["latency_ms"] for t in turns]
        disturbed = sum(t["foreign_cores"] > DISTURBED_CORES for t in turns)
        table.add_row(
            name,
            str(len(turns)),
            f"{percentile(latencies, 50):.0f}",
            f"{percentile(latencies, 90):.0f}",
            p50("vad_hangover_ms"),
            p50("speculative_lead_ms"),
            p50("asr_ms"),
            p50("llm_first_sentence_ms"),
            p50("tts_first_ms"),
            p50("first_audio_ms"),
            f"{disturbed}*" if disturbed else "0",
        )
    console.print(table)
    if len(results) == 2:
        a, b = (percentile([t["latency_ms"] for t in results[n]], 50) for n in VARIANTS)
        console.print(f"plain / speculative p50: {b / a:.2f}x")
    alone_table = Table(title="Models alone (OIP, median)")
    for column in ("ASR RTF, auto window", "ASR RTF, full 30 s window", "TTS RTF", "TTS one sentence (s)"):
        alone_table.add_column(column, justify="right")
    alone_table.add_row(
        f"{alone['asr_auto']:.3f}", f"{alone['asr_full']:.3f}", f"{alone['tts_rtf']:.3f}", f"{alone['tts_first_s']:.3f}"
    )
    console.print(alone_table)
    goal = (
        percentile([t["latency_ms"] for t in results["speculative"]], 50),
        percentile([t["latency_ms"] for t in results["speculative"]], 90),
    )
    met = goal[0] < 800 and goal[1] < 1000
    console.print(
        f"goal p50 < 800 ms and p90 < 1000 ms: [{'green' if met else 'red'}]"
        f"{'met' if met else 'not met'}[/] (p50 {goal[0]:.0f}, p90 {goal[1]:.0f})"
    )


def llm_override(tmp: Path, threads: int) -> Path:
    """A repository whose `smollm2` is the same GGUF with another thread count; it replaces the built-in."""
    from xrserve.models.llm.model import smollm2_path

    version = tmp / "repo" / "smollm2" / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.gguf").symlink_to(smollm2_path())
    (version / "model.toml").write_text(
        f'runtime = "gguf"\nmax_streams = 8\nthreads = {threads}\nparameters = {{ context = 2048 }}\n'
    )
    return tmp / "repo"


def isolation_override(tmp: Path, isolation: str) -> None:
    """Repository entries for the built-in ASR and TTS classes with another isolation; they replace the built-ins."""
    from xrserve.models.asr import WhisperTinyEn
    from xrserve.models.tts import PiperJoe

    def tensors(decls) -> str:
        return (
            "["
            + ", ".join(f'{{ name = "{t.name}", datatype = "{t.datatype}", shape = {t.shape} }}' for t in decls)
            + "]"
        )

    for config in (WhisperTinyEn.default_config(), PiperJoe.default_config()):
        version = tmp / "repo" / config.name / "1"
        version.mkdir(parents=True)
        (version / "model.toml").write_text(
            f'runtime = "python"\nentrypoint = "{config.entrypoint}"\nisolation = "{isolation}"\n'
            f"threads = {config.threads}\nqueue_size = {config.queue_size}\n"
            f"inputs = {tensors(config.inputs)}\noutputs = {tensors(config.outputs)}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20, help="turns per variant (at least 20 for p90)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log)")
    parser.add_argument(
        "--llm-threads",
        type=int,
        default=None,
        help="serve smollm2 from a repository entry with this many llama.cpp threads (the "
        "built-in uses every core; on a machine busy with other work 1 can be faster)",
    )
    parser.add_argument(
        "--isolation",
        choices=("process", "thread"),
        default=None,
        help="serve whisper-tiny-en and piper-joe from repository entries with this isolation "
        "(the built-ins run in worker processes)",
    )
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is needed to speak the questions (make install installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="xrserve-voice-bench-"))
    only = [a for m in MODELS for a in ("--only", m)]
    if args.llm_threads is not None:
        llm_override(tmp, args.llm_threads)
    if args.isolation is not None:
        isolation_override(tmp, args.isolation)
    if (tmp / "repo").exists():
        only += ["--model-repository", str(tmp / "repo")]
    try:
        server, base = procs.start_xrserve(
            ["--dev", "--data-dir", str(tmp / "data"), *only],
            tmp / "server.log",
            env={"PYTHONPATH": str(ROOT / "src")},
            timeout=300,
        )
    except RuntimeError as exc:
        sys.exit(f"the server did not start: {exc}")
    try:
        utterances = [speech(q, tmp) for q in QUESTIONS]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            results = asyncio.run(
                conversation(
                    base.replace("http", "ws", 1) + "/v1/session", utterances, args.turns, server.pid, progress
                )
            )
        alone = models_alone(base, utterances)
    finally:
        procs.end(server)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, alone)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "turns": results,
                "models_alone": alone,
                "cores": os.cpu_count(),
                "llm_threads": args.llm_threads,
                "isolation": args.isolation,
            },
            indent=1,
        )
    )
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
