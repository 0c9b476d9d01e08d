"""Soak: a mixed workload against one server for a long time; errors, latency and memory.

OIP infers and embeddings (minilm), streamed chats (smollm2), camera sessions tracking a
hand (hands, 10 frames a second), and NPC turns (typed lines through the LLM and speech)
run side by side on one `xrserve serve --dev`. The table gives, per kind of work, the
count, the errors by status, p50 and p99; and the server's memory (RSS of its whole
process tree) after the warm-up and at the end. Goal: zero 5xx, RSS growth under 5%.

    .venv/bin/python bench/soak.py                  # 20 minutes after a 1-minute warm-up
    .venv/bin/python bench/soak.py --minutes 2      # a quick look

Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
import websockets
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from llm_support import procs  # noqa: E402 - bench/ is on sys.path as this script's folder

RESULTS = BENCH / "results" / "soak.json"
PHOTO = sorted((BENCH.parent / "tests" / "data" / "hand_images" / "four").glob("*.jpg"))[0]
MODELS = ["minilm", "smollm2", "hands", "whisper-tiny-en", "silero-vad", "piper-joe"]
console = Console()


class Tally:
    """Latencies and outcomes per kind of work."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the warm-up."""
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, kind: str, status: int | str, seconds: float | None = None) -> None:
        self.status[kind][str(status)] += 1
        if seconds is not None:
            self.latency[kind].append(seconds * 1000)


async def oip(client: httpx.AsyncClient, tally: Tally, stop: asyncio.Event) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a red apple"]}]}
    while not stop.is_set():
        started = time.monotonic()
        response = await client.post("/v2/models/minilm/infer", json=body)
        tally.add("oip infer", response.status_code, time.monotonic() - started)


async def embeddings(client: httpx.AsyncClient, tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        response = await client.post("/v1/embeddings", json={"model": "minilm", "input": ["a lakeside camp"]})
        tally.add("embeddings", response.status_code, time.monotonic() - started)


async def chat(client: httpx.AsyncClient, tally: Tally, stop: asyncio.Event) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 24,
            "stream": True}  # fmt: skip
    while not stop.is_set():
        started, first = time.monotonic(), None
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if first is None and line.startswith("data:"):
                    first = time.monotonic() - started
        tally.add("chat stream (first token)", response.status_code, first)


async def camera(url: str, tally: Tally, stop: asyncio.Event) -> None:
    frame = PHOTO.read_bytes()
    async with websockets.connect(url + "/v1/session", max_size=2**24) as socket:
        await socket.recv()  # hello
        await socket.send(json.dumps({"type": "open", "stream": "cam", "kind": "camera", "models": ["hands"]}))
        opened = json.loads(await socket.recv())
        sent: dict[int, float] = {}

        async def receive() -> None:
            async for raw in socket:
                message = json.loads(raw)
                if message.get("type") == "result":
                    tally.add("camera frame", 200, time.monotonic() - sent.pop(message["sequence"], time.monotonic()))
                elif message.get("type") == "skipped":
                    tally.add("camera frame", f"skipped {message['reason']}")
                elif message.get("type") == "error":
                    tally.add("camera frame", message.get("status", "error"))

        reader = asyncio.create_task(receive())
        sequence = 0
        while not stop.is_set():
            sequence += 1
            sent[sequence] = time.monotonic()
            header = struct.pack("<BBHId", 1, 0, opened["channel"], sequence, time.time() * 1000)
            await socket.send(header + frame)
            await asyncio.sleep(0.1)
        reader.cancel()


async def npc(url: str, tally: Tally, stop: asyncio.Event) -> None:
    async with websockets.connect(url + "/v1/session", max_size=2**24) as socket:
        await socket.recv()
        await socket.send(json.dumps({"type": "open", "stream": "npc", "kind": "npc", "max_tokens": 24}))
        await socket.recv()  # opened
        while not stop.is_set():
            started = time.monotonic()
            await socket.send(json.dumps({"type": "say", "stream": "npc", "text": "Hello, who are you?"}))
            while True:
                raw = await socket.recv()
                if isinstance(raw, bytes):
                    continue
                message = json.loads(raw)
                if message["type"] in ("turn_end", "error"):
                    tally.add("npc turn", 200 if message["type"] == "turn_end" else message.get("status"),
                              time.monotonic() - started)  # fmt: skip
                    break


def rss_mib(root: int) -> float:
    total = 0
    for pid in procs.tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def soak(url: str, root: int, minutes: float, warmup_s: float) -> dict:
    tally = Tally()
    stop = asyncio.Event()
    ws = url.replace("http", "ws", 1)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        work = [oip(client, tally, stop), oip(client, tally, stop), embeddings(client, tally, stop),
                chat(client, tally, stop), camera(ws, tally, stop), npc(ws, tally, stop)]  # fmt: skip
        tasks = [asyncio.create_task(w) for w in work]
        total = warmup_s + minutes * 60
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("soak", total=total)
            started, rss_start = time.monotonic(), None
            while (elapsed := time.monotonic() - started) < total:
                if rss_start is None and elapsed >= warmup_s:
                    rss_start = rss_mib(root)
                    tally.reset()  # counts and latencies are those after the warm-up
                done = sum(sum(c.values()) for c in tally.status.values())
                progress.update(bar, completed=elapsed, description=f"soak: {done} done")
                await asyncio.sleep(1)
        stop.set()
        await asyncio.wait(tasks, timeout=60)
        for task in tasks:
            task.cancel()
    rss_end = rss_mib(root)
    rows = {}
    for kind in sorted(tally.status):
        latencies = np.array(tally.latency[kind] or [np.nan])
        p50, p99 = (float(np.nanpercentile(latencies, q)) for q in (50, 99))
        rows[kind] = {"count": sum(tally.status[kind].values()), "outcomes": dict(tally.status[kind]),
                      "p50_ms": p50, "p99_ms": p99}  # fmt: skip
    return {"minutes": minutes, "warmup_s": warmup_s, "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--warmup-s", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        only = [arg for model in MODELS for arg in ("--only", model)]
        process, url = procs.start_xrserve(["--dev", "--data-dir", f"{tmp}/data", *only], Path(tmp) / "server.log")
        try:
            result = asyncio.run(soak(url, process.pid, args.minutes, args.warmup_s))
        finally:
            procs.end(process)
    table = Table("work", "count", "outcomes", "p50 ms", "p99 ms", title=f"soak, {args.minutes:g} min")
    for kind, row in result["rows"].items():
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(row["outcomes"].items()))
        table.add_row(kind, str(row["count"]), outcomes, f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}")
    console.print(table)
    growth = 100 * (result["rss_end_mib"] / result["rss_start_mib"] - 1)
    five_xx = sum(v for row in result["rows"].values() for k, v in row["outcomes"].items() if k.startswith("5"))
    console.print(f"server RSS {result['rss_start_mib']:.0f} MiB after warm-up -> {result['rss_end_mib']:.0f} MiB "
                  f"({growth:+.1f}%); 5xx answers: {five_xx}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
