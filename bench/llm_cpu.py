"""Where the CPU goes while 8 streams decode through xrserve: each thread of the server and its worker.

The 8-stream rate is below llama-server's in some runs (docs/llm.md). On 2 cores, any CPU the
Python side uses (the front's event loop and SSE, the worker's hop) is taken from llama.cpp's
two compute threads, and one late thread holds up a whole step. This measures that share:
`xrserve serve --only smollm2 --dev`, one warm-up burst, then `--rounds` bursts of 8 streams of
128 tokens at once; CPU seconds of every thread (utime + stime from /proc) over the measured
bursts, with this client's own beside them.

    .venv/bin/python bench/llm_cpu.py              # ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_support import procs  # noqa: E402 - after the sys.path line above

STREAMS = 8
TICK = os.sysconf("SC_CLK_TCK")


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
        seconds[(pid, tid, name)] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


async def stream(client: httpx.AsyncClient, url: str, i: int) -> int:
    body = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": f"You are helper number {i}."},
            {"role": "user", "content": "Tell a very long story about a dragon."},
        ],
        "max_tokens": 128,
        "stream": True,
        "seed": i,
    }
    chunks = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            chunks += line.startswith("data:")
    return chunks


async def burst(url: str) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*[stream(client, url, i) for i in range(STREAMS)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="xrserve-llm-cpu-")) / "serve.log"
    process, url = procs.start_xrserve(["--only", "smollm2", "--dev"], log)
    try:
        asyncio.run(burst(url))  # warm: the first burst also loads caches
        pids = procs.tree_pids(process.pid)
        before = {k: v for pid in pids for k, v in thread_cpu(pid).items()}
        own = sum(os.times()[:2])
        started = time.monotonic()
        for _ in range(args.rounds):
            asyncio.run(burst(url))
        wall = time.monotonic() - started
        own = sum(os.times()[:2]) - own
        after = {k: v for pid in pids for k, v in thread_cpu(pid).items()}
    finally:
        procs.end(process)
    used = sorted(((seconds - before.get(key, 0.0), key) for key, seconds in after.items()), reverse=True)
    print(f"{args.rounds} bursts of {STREAMS} x 128 tokens in {wall:.1f} s; CPU by thread (share of one core):")
    for seconds, (pid, tid, name) in used:
        if seconds >= 0.01:
            print(f"  {seconds:7.2f} s {seconds / wall:6.1%}  {name} (pid {pid}, thread {tid})")
    print(f"  {own:7.2f} s {own / wall:6.1%}  this client")


if __name__ == "__main__":
    main()
