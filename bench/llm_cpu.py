"""Where the time goes while 8 streams decode: the engine in-process against the same through the server.

The 8-stream rate is below llama-server's in some runs (docs/llm.md). This runs the same
bursts (8 streams of 128 tokens at once, `--rounds` of them after one to warm up) twice, side
by side in one run:

  engine   the LLM engine in this process (2 threads, as the built-in): summed tokens/s, and
           each 8-row step split into llama_decode and the Python around it
  server   `xrserve serve --only smollm2 --dev` over HTTP (SSE): summed tokens/s, and the CPU
           seconds of every thread (utime + stime from /proc) of the server and its worker,
           with this client's own beside them

On 2 cores, any CPU the Python side uses (the front's event loop and SSE, the worker's hop) is
taken from llama.cpp's two compute threads, and one late thread holds up a whole step.

    .venv/bin/python bench/llm_cpu.py              # ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))
from llm_support import procs  # noqa: E402 - after the sys.path lines above
from llm_support.client import body, stream_chat  # noqa: E402

from xrserve.models.llm.engine import Engine, GenerationRequest  # noqa: E402
from xrserve.models.llm.model import smollm2_path  # noqa: E402

STREAMS = 8


def thread_cpu(pid: int) -> dict[tuple[int, str, str], float]:
    """CPU seconds of each thread of a process, by (pid, thread id, thread name)."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds[(pid, tid, name)] = (int(fields[11]) + int(fields[12])) / procs.CLK_TCK
    return seconds


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You are helper number {i}."},
        {"role": "user", "content": "Tell a very long story about a dragon."},
    ]


def engine_bursts(rounds: int) -> tuple[float, list[float], list[float]]:
    """Summed tokens/s of the measured bursts; each 8-row step's llama_decode and total seconds."""
    engine = Engine(str(smollm2_path()), n_ctx_per_seq=2048, n_seq_max=STREAMS, n_threads=2)
    decodes: list[tuple[int, float]] = []
    steps: list[float] = []
    native = engine._ll

    class Timed:  # llama_decode timed, the rest of the library as it is
        def __getattr__(self, name: str) -> Any:
            return getattr(native, name)

        def llama_decode(self, ctx: Any, batch: Any) -> int:
            started = time.perf_counter()
            status = native.llama_decode(ctx, batch)
            decodes.append((batch.n_tokens, time.perf_counter() - started))
            return status

    step = engine._step

    def timed_step() -> None:
        started = time.perf_counter()
        step()
        steps.append(time.perf_counter() - started)

    engine._ll, engine._step = Timed(), timed_step  # type: ignore[method-assign]
    tokens, wall = 0, 0.0
    with engine:
        for round_ in range(rounds + 1):
            done = [threading.Event() for _ in range(STREAMS)]
            counts = [0] * STREAMS
            decodes.clear()
            steps.clear()
            started = time.monotonic()
            for i in range(STREAMS):

                def emit(event: Any, i: int = i, done: list = done, counts: list = counts) -> None:
                    if event.kind in ("done", "error"):
                        counts[i] = event.completion_tokens
                        done[i].set()

                prompt = engine.chat_template(messages(i))
                engine.submit(round_ * STREAMS + i, GenerationRequest(prompt, max_tokens=128, seed=i), emit)
            for event in done:
                event.wait(300)
            if round_:  # the first warms up
                tokens, wall = tokens + sum(counts), wall + time.monotonic() - started
    eight = [(d, s) for (n, d), s in zip(decodes, steps, strict=False) if n == STREAMS]
    return tokens / wall, [d for d, _ in eight], [s for _, s in eight]


async def burst(url: str) -> int:
    """8 streamed answers at once; their completion tokens (the server's usage)."""
    async with httpx.AsyncClient(timeout=120) as client:
        answers = await asyncio.gather(
            *[
                stream_chat(
                    client,
                    f"{url}/v1/chat/completions",
                    body("smollm2", {"messages": messages(i), "max_tokens": 128, "seed": i}, {}),
                )
                for i in range(STREAMS)
            ]
        )
    failed = [answer.error for answer in answers if answer.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {STREAMS} streams failed: {failed[0]}")
    return sum(answer.completion_tokens for answer in answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rate, decodes, steps = engine_bursts(args.rounds)
    log = Path(tempfile.mkdtemp(prefix="xrserve-llm-cpu-")) / "serve.log"
    process, url = procs.start_xrserve(["--only", "smollm2", "--dev"], log)
    try:
        asyncio.run(burst(url))  # warm: the first burst also loads caches
        pids = procs.tree_pids(process.pid)
        before = {k: v for pid in pids for k, v in thread_cpu(pid).items()}
        own = procs.own_cpu_s()
        started = time.monotonic()
        tokens = sum(asyncio.run(burst(url)) for _ in range(args.rounds))
        wall = time.monotonic() - started
        own = procs.own_cpu_s() - own
        after = {k: v for pid in pids for k, v in thread_cpu(pid).items()}
    finally:
        procs.end(process)
    used = sorted(((seconds - before.get(key, 0.0), key) for key, seconds in after.items()), reverse=True)
    print(f"{args.rounds} bursts of {STREAMS} streams x 128 tokens, after one to warm up:")
    print(
        f"  engine in-process: {rate:.1f} tok/s summed; a step of {STREAMS} generating rows p50 "
        f"{np.median(steps) * 1000:.1f} ms, of which llama_decode {np.median(decodes) * 1000:.1f} ms"
    )
    print(f"  through the server: {tokens / wall:.1f} tok/s summed ({tokens / wall / rate:.2f}x in-process)")
    print("CPU by thread while the server's bursts ran (share of one core):")
    for seconds, (pid, tid, name) in used:
        if seconds >= 0.01:
            print(f"  {seconds:7.2f} s {seconds / wall:6.1%}  {name} (pid {pid}, thread {tid})")
    print(f"  {own:7.2f} s {own / wall:6.1%}  this client")


if __name__ == "__main__":
    main()
