"""Serving overhead, side by side: xrserve, MLServer, Ray Serve, a bare FastAPI route, raw ASGI, no HTTP at all.

Every server runs the same tiny ONNX model (torch.nn.Linear 64 -> 16) and the same
"10 ms model" (sleep 10 ms per batch, then the linear), behind the same OIP v2 JSON
route, so what differs between rows is only what each server does around the model.
One server runs at a time; each is ended with its whole process tree.

    .venv/bin/python bench/serving_overhead.py            # ~6 minutes
    .venv/bin/python bench/serving_overhead.py --quick    # ~2 minutes, noisier
    .venv/bin/python bench/serving_overhead.py --only xrserve,mlserver

Throughput comes from wrk (one thread, keep-alive, Lua POST); latency percentiles from
our own keep-alive client (wrk's are stall-corrected); server CPU from /proc over the
wrk window, summed over the server's whole process tree. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results" / "serving_overhead.json"
sys.path.insert(0, str(PEERS))

from llm_support import procs  # noqa: E402 - bench/ is on sys.path as this script's folder
from tinymodel import IN_FEATURES, OUT_FEATURES, SLOW_DELAY_S, LinearModel  # noqa: E402

SERVERS = ("xrserve", "mlserver", "ray", "fastapi", "asgi")
MAX_BATCH = 16
BATCH_WINDOW_MS = 2  # every server's batching window for the 10 ms model
QUIET_CORES = 0.15  # CPU other processes may use while we measure before a window counts as disturbed
console = Console(width=None if sys.stdout.isatty() else 160)


# -- run lengths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs; --quick trades precision for a ~2 minute run."""

    warmup_s: int = 2  # wrk takes whole seconds
    wrk_s: int = 6
    latency_s: float = 4.0
    latency_max_requests: int = 6000
    quiet_wait_s: float = 120.0  # most time spent, in all, waiting for other processes to go quiet

    @classmethod
    def quick(cls) -> Plan:
        return cls(warmup_s=1, wrk_s=2, latency_s=1.5, latency_max_requests=2000, quiet_wait_s=30.0)


# -- the model and the request ---------------------------------------------------------------


def export_linear(path: Path) -> None:
    """Export torch.nn.Linear(64, 16) with a dynamic batch axis: the model every server runs."""
    import warnings

    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(IN_FEATURES, OUT_FEATURES).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is asked for: the classic exporter
        torch.onnx.export(
            layer,
            (torch.randn(1, IN_FEATURES),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
        )


def request_input() -> np.ndarray:
    """The one [1, 64] input sent in every request (rounded so its JSON is short and exact)."""
    return np.round(np.random.default_rng(0).standard_normal((1, IN_FEATURES)), 4).astype(np.float32)


def request_body(x: np.ndarray) -> bytes:
    """OIP v2 JSON for `x`, identical for every server."""
    document = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return json.dumps(document, separators=(",", ":")).encode()


# -- peer virtual environments -------------------------------------------------------------------


@dataclass(frozen=True)
class Venv:
    """A peer server's own venv: created with pip from PyPI when missing, reused when it imports."""

    name: str
    requirements: tuple[str, ...]
    probe: str  # modules whose import proves the venv is complete

    @property
    def path(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def ready(self) -> bool:
        return (
            self.python.exists()
            and subprocess.run([self.python, "-c", f"import {self.probe}"], capture_output=True).returncode == 0
        )

    def ensure(self, progress: Progress) -> None:
        if self.ready():
            return
        task = progress.add_task(f"creating venv {self.name} (pip, once)", total=None)
        base_python = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([base_python, "-m", "venv", "--clear", self.path], check=True)
        subprocess.run([self.python, "-m", "pip", "install", "-q", *self.requirements], check=True)
        progress.remove_task(task)

    def version_of(self, distribution: str) -> str:
        code = f"import importlib.metadata as m; print(m.version('{distribution}'))"
        return subprocess.run([self.python, "-c", code], capture_output=True, text=True).stdout.strip()


# httptools: MLServer's uvicorn picks the C HTTP parser when it is installed (~35% more req/s than h11 here);
# `pip install mlserver` alone leaves it out, and we measure MLServer at its fastest.
MLSERVER_VENV = Venv(
    "mlserver", ("mlserver==1.7.1", "uvloop<0.22", "httptools", "onnxruntime", "numpy"), "mlserver, httptools"
)
RAY_VENV = Venv("ray", ("ray[serve]==2.60.0", "onnxruntime", "numpy"), "ray.serve")


# -- process trees: started, measured and ended by bench/llm_support/procs.py (shared with every bench) ------


def server_window(server_pid: int) -> procs.CpuWindow:
    """CPU from now on: the server tree's, and the cores of processes that are neither the server nor ours (wrk)."""
    return procs.CpuWindow([server_pid], own=server_pid)


def prioritize(pid: int, niceness: int) -> None:
    """Give a process's whole session this niceness.

    With the kernel's autogroup scheduling (the default here) each session competes
    as one group whatever its processes' own nice values, so the group's nice is set
    too (/proc/<pid>/autogroup). No-op for niceness 0.
    """
    if not niceness:
        return
    os.setpriority(os.PRIO_PROCESS, pid, niceness)
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    except OSError:
        pass  # no autogroup scheduling on this kernel: the process nice is what counts


# -- the servers -------------------------------------------------------------------------------


@dataclass
class Target:
    """One model on one server: one row of a table."""

    key: str
    label: str
    model: str
    kind: str  # "linear" or "slow"


@dataclass
class ServerSpec:
    """How to start one server, where it listens, and which rows it serves."""

    name: str
    label: str
    argv: list[str]
    port: int
    targets: list[Target]
    env: dict[str, str | None] = field(default_factory=dict)  # on top of ours (procs.start)
    cwd: Path = ROOT
    headers: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 90.0
    batch_probe: Callable[[str], tuple[float, float]] | None = None  # model -> (rows batched, batches) so far


def _peer_env(**extra: str) -> dict[str, str | None]:
    """What every server's environment changes from ours: bench/peers importable, nothing phoning home, no venv."""
    return {
        "PYTHONPATH": str(PEERS),
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "VIRTUAL_ENV": None,
        **extra,
    }


def _write_toml(directory: Path, onnx: Path, body: str) -> None:
    """One xrserve model version: model.toml plus the ONNX file it (or its Python model) reads."""
    directory.mkdir(parents=True)
    shutil.copy(onnx, directory / "model.onnx")
    tensors = (
        f'inputs = [{{ name = "x", datatype = "FP32", shape = [-1, {IN_FEATURES}] }}]\n'
        f'outputs = [{{ name = "y", datatype = "FP32", shape = [-1, {OUT_FEATURES}] }}]\n'
    )
    (directory / "model.toml").write_text(body + tensors)


def xrserve_spec(work: Path, onnx: Path) -> ServerSpec:
    """xrserve with keys, audit and metrics on; the linear model four ways and the 10 ms model two ways."""
    repo, data = work / "xrserve-repo", work / "xrserve-data"
    linear = f'runtime = "onnx"\nmax_batch_size = {MAX_BATCH}\n'
    _write_toml(repo / "linear" / "1", onnx, linear + "max_queue_delay_ms = 1\n")
    _write_toml(repo / "linear_thread" / "1", onnx, linear + 'max_queue_delay_ms = 1\nisolation = "thread"\n')
    _write_toml(repo / "linear_nodelay" / "1", onnx, linear + "max_queue_delay_ms = 0\n")
    _write_toml(repo / "linear_inline" / "1", onnx, linear + 'max_queue_delay_ms = 1\nisolation = "inline"\n')
    slow = (
        f'runtime = "python"\nentrypoint = "model.py:SlowLinear"\nmax_batch_size = {MAX_BATCH}\n'
        f"max_queue_delay_ms = {BATCH_WINDOW_MS}\nparameters = {{ delay_ms = {SLOW_DELAY_S * 1000:g} }}\n"
    )
    for name, extra in (("slow", ""), ("slow_thread", 'isolation = "thread"\n')):
        _write_toml(repo / name / "1", onnx, slow + extra)
        shutil.copy(PEERS / "xrserve_slow.py", repo / name / "1" / "model.py")
    xrserve = str(ROOT / ".venv" / "bin" / "xrserve")
    key = subprocess.run(
        [xrserve, "keys", "create", "--data-dir", str(data), "--scope", "*", "--quiet"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = procs.free_port()
    return ServerSpec(
        "xrserve",
        "xrserve",
        [
            xrserve,
            "serve",
            "--port",
            str(port),
            "--no-builtins",
            "--model-repository",
            str(repo),
            "--data-dir",
            str(data),
        ],
        port,
        [
            Target("xrserve", "xrserve (process, delay 1 ms)", "linear", "linear"),
            Target("xrserve_thread", "xrserve (thread, delay 1 ms)", "linear_thread", "linear"),
            Target("xrserve_nodelay", "xrserve (process, delay 0)", "linear_nodelay", "linear"),
            Target("xrserve_inline", "xrserve (inline, delay 1 ms)", "linear_inline", "linear"),
            Target("xrserve", "xrserve (process, batch 16)", "slow", "slow"),
            Target("xrserve_thread", "xrserve (thread, batch 16)", "slow_thread", "slow"),
        ],
        env=_peer_env(),
        headers={"Authorization": f"Bearer {key}"},
        batch_probe=lambda model: xrserve_batches(port, model),
    )


def xrserve_batches(port: int, model: str) -> tuple[float, float]:
    """Requests batched and batches run so far for a model, from xrserve's Prometheus histogram."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in totals:
            if line.startswith(f"xrserve_batch_size_{part}{{") and f'model="{model}"' in line:
                totals[part] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def mlserver_spec(work: Path, onnx: Path) -> ServerSpec:
    """MLServer at its fastest: no parallel workers, no access log, httptools; adaptive batching for the 10 ms model."""
    repo, port = work / "mlserver-repo", procs.free_port()
    repo.mkdir()
    settings = {
        "http_port": port,
        "grpc_port": procs.free_port(),
        "metrics_port": procs.free_port(),
        "parallel_workers": 0,
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    models = {
        "linear": {"extra": {"delay_ms": 0}},
        "slow": {
            "extra": {"delay_ms": SLOW_DELAY_S * 1000},
            "max_batch_size": MAX_BATCH,
            "max_batch_time": BATCH_WINDOW_MS / 1000,
        },
    }
    for name, options in models.items():
        (repo / name).mkdir()
        model_settings = {
            "name": name,
            "implementation": "mlserver_runtime.LinearRuntime",
            "parameters": {"uri": str(onnx), "extra": options.pop("extra")},
            **options,
        }
        (repo / name / "model-settings.json").write_text(json.dumps(model_settings))
    label = f"MLServer {MLSERVER_VENV.version_of('mlserver')}"
    return ServerSpec(
        "mlserver",
        label,
        [str(MLSERVER_VENV.path / "bin" / "mlserver"), "start", str(repo)],
        port,
        [
            Target("mlserver", f"{label} (fastest)", "linear", "linear"),
            Target("mlserver", f"{label} (adaptive batching 16)", "slow", "slow"),
        ],
        env=_peer_env(),
        cwd=repo,
    )


def ray_spec(work: Path, onnx: Path) -> ServerSpec:
    """Ray Serve: one replica per model, `@serve.batch` for the 10 ms model."""
    port = procs.free_port()
    label = f"Ray Serve {RAY_VENV.version_of('ray')}"
    return ServerSpec(
        "ray",
        label,
        [str(RAY_VENV.python), str(PEERS / "ray_app.py"), str(port), str(onnx)],
        port,
        [Target("ray", label, "linear", "linear"), Target("ray", f"{label} (@serve.batch 16)", "slow", "slow")],
        env=_peer_env(),
        startup_timeout_s=240,
    )


def _uvicorn_spec(name: str, label: str, app: str, onnx: Path) -> ServerSpec:
    """A floor: uvicorn (uvloop, httptools) serving an app from bench/peers with the model on the event loop."""
    port = procs.free_port()
    argv = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return ServerSpec(
        name,
        label,
        argv,
        port,
        [Target(name, label, "linear", "linear")],
        env=_peer_env(BENCH_ONNX=str(onnx)),
        cwd=PEERS,
    )


def fastapi_spec(work: Path, onnx: Path) -> ServerSpec:
    """The floor the issue names: one FastAPI route, no auth, audit, metrics or queue."""
    return _uvicorn_spec("fastapi", "bare FastAPI (in-process ONNX)", "fastapi_app:app", onnx)


def asgi_spec(work: Path, onnx: Path) -> ServerSpec:
    """Below FastAPI: the same route as a raw ASGI callable, to show what the framework costs."""
    return _uvicorn_spec("asgi", "raw ASGI (in-process ONNX)", "asgi_app:app", onnx)


SPECS: dict[str, Callable[[Path, Path], ServerSpec]] = {
    "xrserve": xrserve_spec,
    "mlserver": mlserver_spec,
    "ray": ray_spec,
    "fastapi": fastapi_spec,
    "asgi": asgi_spec,
}


@contextmanager
def running(
    spec: ServerSpec, work: Path, body: bytes, expected: np.ndarray, niceness: int
) -> Iterator[subprocess.Popen]:
    """Start a server in its own session, wait until every target answers correctly, end its tree after."""
    log_path = work / f"{spec.name}.log"
    process = procs.start(spec.argv, log_path, env=spec.env, cwd=spec.cwd)
    prioritize(process.pid, niceness)
    try:
        _wait_until_answering(spec, process, body, expected, log_path)
        yield process
    finally:
        procs.end(process)


def _wait_until_answering(
    spec: ServerSpec, process: subprocess.Popen, body: bytes, expected: np.ndarray, log_path: Path
) -> None:
    """Poll each target's infer route until it returns the in-process answer; fail with the server's log."""
    import httpx

    deadline = time.monotonic() + spec.startup_timeout_s
    with httpx.Client(base_url=f"http://127.0.0.1:{spec.port}", headers=spec.headers, timeout=30) as client:
        for target in spec.targets:
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{spec.label} did not start serving '{target.model}'; log tail:\n{tail}")
                try:
                    response = client.post(
                        f"/v2/models/{target.model}/infer", content=body, headers={"Content-Type": "application/json"}
                    )
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    _check_answer(spec, target, response.json(), expected)
                    break
                time.sleep(0.5)


def _check_answer(spec: ServerSpec, target: Target, document: dict[str, Any], expected: np.ndarray) -> None:
    """Every server must compute the same y, or the comparison is meaningless."""
    output = document["outputs"][0]
    y = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    if not np.allclose(y, expected, atol=1e-5):
        raise RuntimeError(
            f"{spec.label} '{target.model}' answered {y.ravel()[:4]}..., expected {expected.ravel()[:4]}..."
        )


# -- load: wrk for throughput and CPU, our own client for latency ----------------------------------


@dataclass
class WrkRun:
    """One wrk window: requests served, errors, and the server tree's CPU over the window."""

    connections: int
    requests: int
    duration_s: float
    errors: int
    server_cpu_s: float
    wrk_p50_ms: float
    wrk_p99_ms: float
    foreign_cores: float  # CPU used meanwhile by processes that are neither the server, wrk nor us
    mean_batch: float | None = None  # requests per model call over the window, where the server tells

    @property
    def disturbed(self) -> bool:
        return self.foreign_cores >= QUIET_CORES

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(self.requests, 1) * 1e6


def run_wrk(
    url: str,
    body_file: Path,
    headers: dict[str, str],
    connections: int,
    seconds: int,
    server_pid: int,
    progress: Progress,
    task: Any,
) -> WrkRun:
    """One wrk thread, `connections` keep-alive connections; CPU of the server tree read before and after."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(PEERS / "wrk_post.lua"),
        url,
        "--",
        str(body_file),
        headers.get("Authorization", ""),
    ]
    window = server_window(server_pid)
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while wrk.poll() is None:
        progress.update(task, completed=min(time.monotonic() - window.started, seconds))
        time.sleep(0.1)
    usage = window.close()
    cpu, foreign = usage["server_cores"] * usage["seconds"], usage["foreign_cores"]
    output = wrk.stdout.read() if wrk.stdout else ""
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed on {url}:\n{output}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkRun(
        connections,
        data["requests"],
        data["duration_us"] / 1e6,
        errors,
        cpu,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        foreign,
    )


@dataclass
class LatencyRun:
    """Latencies seen by our client: a request written to its whole response read, keep-alive."""

    concurrency: int
    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    foreign_cores: float

    @property
    def disturbed(self) -> bool:
        return self.foreign_cores >= QUIET_CORES


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked) and return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status
    while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
        await reader.readexactly(size + 2)
    await reader.readline()
    return status


def _raw_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _latency_worker(port: int, request: bytes, state: dict[str, Any], latencies: list[float]) -> None:
    """One keep-alive connection sending requests back to back until the budget is spent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while state["left"] > 0 and time.perf_counter() < state["deadline"]:
            state["left"] -= 1
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            state["errors"] += status != 200
    finally:
        writer.close()


async def _latency(
    port: int, request: bytes, concurrency: int, seconds: float, max_requests: int, tick: Callable[[float], None]
) -> tuple[list[float], int]:
    state = {"left": max_requests, "deadline": time.perf_counter() + seconds, "errors": 0}
    latencies: list[float] = []
    workers = asyncio.gather(*(_latency_worker(port, request, state, latencies) for _ in range(concurrency)))
    started = time.perf_counter()
    while not workers.done():
        tick(time.perf_counter() - started)
        await asyncio.wait([workers], timeout=0.1)
    await workers
    return latencies, state["errors"]


def measure_latency(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    plan: Plan,
    server_pid: int,
    progress: Progress,
    task: Any,
) -> LatencyRun:
    """Closed-loop latency at a given concurrency, bounded by time and by count; the first 5% are warm-up."""
    import uvloop

    request = _raw_request(port, path, body, headers)
    tick = lambda elapsed: progress.update(task, completed=min(elapsed, plan.latency_s))  # noqa: E731
    window = server_window(server_pid)
    latencies, errors = uvloop.run(
        _latency(port, request, concurrency, plan.latency_s, plan.latency_max_requests, tick)
    )
    foreign = window.close()["foreign_cores"]
    kept = np.array(latencies[len(latencies) // 20 :]) * 1000
    return LatencyRun(
        concurrency,
        len(kept),
        errors,
        float(np.percentile(kept, 50)),
        float(np.percentile(kept, 99)),
        float(kept.mean()),
        foreign,
    )


# -- in-process reference ---------------------------------------------------------------------------


@dataclass
class InProcess:
    """onnxruntime session.run on one [1, 64] input, no HTTP: what serving is an overhead on top of."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    slow_batch16_ms: float  # one call of the 10 ms model on a batch of 16

    @property
    def slow_ideal_rps(self) -> float:
        """The 10 ms model's ceiling at c=16: one full batch per call, no serving cost at all."""
        return MAX_BATCH / (self.slow_batch16_ms / 1000)


def measure_in_process(onnx: Path, x: np.ndarray, calls: int) -> InProcess:
    model, slow = LinearModel(onnx), LinearModel(onnx, SLOW_DELAY_S)
    for _ in range(200):
        model(x)
    times = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        model(x)
        times.append(time.perf_counter_ns() - started)
    batch = np.repeat(x, MAX_BATCH, axis=0)
    slow_ms = statistics.median(_timed(lambda: slow(batch)) for _ in range(20)) * 1000
    ms = np.array(times) / 1e6
    return InProcess(float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean()), slow_ms)


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# -- one row ----------------------------------------------------------------------------------------


@dataclass
class Row:
    """Everything measured for one target."""

    key: str
    label: str
    server: str
    model: str
    kind: str
    wrk: dict[int, WrkRun] = field(default_factory=dict)
    latency: dict[int, LatencyRun] = field(default_factory=dict)

    def rps(self, c: int) -> float | None:
        return self.wrk[c].rps if c in self.wrk else None


def steps_of(target: Target) -> list[tuple[str, int]]:
    """The measurements a target gets: the linear model at c=1 and c=16, the 10 ms model at c=16."""
    if target.kind == "linear":
        return [("warmup", 16), ("wrk", 1), ("wrk", 16), ("latency", 1), ("latency", 16)]
    return [("warmup", 16), ("wrk", 16), ("latency", 16)]


def measure_target(
    spec: ServerSpec,
    target: Target,
    server: subprocess.Popen,
    body: bytes,
    body_file: Path,
    plan: Plan,
    gate: procs.QuietGate,
    progress: Progress,
    overall: Any,
) -> Row:
    row = Row(target.key, target.label, spec.name, target.model, target.kind)
    path = f"/v2/models/{target.model}/infer"
    url = f"http://127.0.0.1:{spec.port}{path}"
    for step, c in steps_of(target):
        seconds = {"warmup": plan.warmup_s, "wrk": plan.wrk_s, "latency": plan.latency_s}[step]
        if step != "warmup":
            gate.wait_shown([server.pid], progress)  # until other processes go quiet (bounded)
        task = progress.add_task(f"  {target.label}: {step} c={c}", total=seconds)
        if step == "latency":
            row.latency[c] = measure_latency(spec.port, path, body, spec.headers, c, plan, server.pid, progress, task)
        else:
            before = spec.batch_probe(target.model) if spec.batch_probe else None
            run = run_wrk(url, body_file, spec.headers, c, seconds, server.pid, progress, task)
            if before is not None and spec.batch_probe is not None:
                rows_done, batches = (a - b for a, b in zip(spec.batch_probe(target.model), before, strict=True))
                run.mean_batch = rows_done / batches if batches else None
            if step == "wrk":
                row.wrk[c] = run
        progress.remove_task(task)
        progress.advance(overall)
    return row


# -- report -----------------------------------------------------------------------------------------


def _marks(run: WrkRun | LatencyRun) -> str:
    """Flags that make a number suspect: failed requests, or other processes busy during the window."""
    marks = f" [red]({run.errors} err)[/]" if run.errors else ""
    return marks + (" [yellow]*[/]" if run.disturbed else "")


def _fmt_rps(run: WrkRun | None) -> str:
    return "-" if run is None else f"{run.rps:,.0f}" + _marks(run)


def _fmt_lat(run: LatencyRun | None) -> str:
    return "-" if run is None else f"{run.p50_ms:.2f} / {run.p99_ms:.2f}" + _marks(run)


def _fmt_cpu(run: WrkRun | None) -> str:
    return f"{run.cpu_us_per_request:,.0f}" if run else "-"


def linear_table(rows: list[Row], reference: InProcess) -> Table:
    table = Table(title="Tiny ONNX model (Linear 64->16), OIP v2 JSON over HTTP/1.1 keep-alive, loopback")
    for column in (
        "server",
        "req/s c=1",
        "req/s c=16",
        "p50 / p99 ms c=1",
        "p50 / p99 ms c=16",
        "CPU µs/req c=1",
        "CPU µs/req c=16",
        "batch c=16",
    ):
        table.add_column(column, justify="left" if column == "server" else "right")
    for row in rows:
        busy = row.wrk.get(16)
        batch = f"{busy.mean_batch:.1f}" if busy and busy.mean_batch else "-"
        table.add_row(
            row.label,
            _fmt_rps(row.wrk.get(1)),
            _fmt_rps(busy),
            _fmt_lat(row.latency.get(1)),
            _fmt_lat(row.latency.get(16)),
            _fmt_cpu(row.wrk.get(1)),
            _fmt_cpu(busy),
            batch,
        )
    table.add_row(
        "in-process session.run (no HTTP)",
        f"{1000 / reference.mean_ms:,.0f}",
        "-",
        f"{reference.p50_ms:.3f} / {reference.p99_ms:.3f}",
        "-",
        "-",
        "-",
        "-",
        style="dim",
    )
    return table


def slow_table(rows: list[Row], reference: InProcess) -> Table:
    table = Table(
        title=f"10 ms model (sleep 10 ms per batch + linear), c=16, batches up to {MAX_BATCH}, "
        f"{BATCH_WINDOW_MS} ms window"
    )
    for column in ("server", "req/s c=16", "p50 / p99 ms c=16", "CPU µs/req c=16", "mean batch"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for row in rows:
        run = row.wrk.get(16)
        batch = f"{run.mean_batch:.1f}" if run and run.mean_batch else "-"
        table.add_row(row.label, _fmt_rps(run), _fmt_lat(row.latency.get(16)), _fmt_cpu(run), batch)
    table.add_row(
        "ideal: one full batch per in-process call",
        f"{reference.slow_ideal_rps:,.0f}",
        "-",
        "-",
        str(MAX_BATCH),
        style="dim",
    )
    return table


def _find(rows: list[Row], key: str, kind: str) -> Row | None:
    return next((r for r in rows if r.key == key and r.kind == kind), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


VARIANTS = {
    "xrserve": "xrserve (process, delay 1 ms)",
    "xrserve_thread": "xrserve (thread, delay 1 ms)",
    "xrserve_nodelay": "xrserve (process, delay 0)",
    "xrserve_inline": "xrserve (inline, delay 1 ms)",
}
PEER_NAMES = {"mlserver": "MLServer", "ray": "Ray Serve", "fastapi": "bare FastAPI", "asgi": "raw ASGI"}


def ratios(rows: list[Row], reference: InProcess) -> dict[str, float | None]:
    """The numbers the goals are about, for every xrserve variant against each peer."""
    out: dict[str, float | None] = {}
    for variant in VARIANTS:
        ours = _find(rows, variant, "linear")
        if ours is None:
            continue
        for peer in PEER_NAMES:
            theirs = _find(rows, peer, "linear")
            for c in (1, 16):
                out[f"{variant}/{peer} req/s c={c}"] = _ratio(ours.rps(c), theirs.rps(c) if theirs else None)
        if 1 in ours.latency:
            out[f"{variant} p50 c=1 minus in-process p50 (ms)"] = ours.latency[1].p50_ms - reference.p50_ms
    for variant in ("xrserve", "xrserve_thread"):
        ours = _find(rows, variant, "slow")
        for peer in ("mlserver", "ray"):
            theirs = _find(rows, peer, "slow")
            if ours and theirs:
                out[f"10 ms model: {variant}/{peer} req/s c=16"] = _ratio(ours.rps(16), theirs.rps(16))
    return out


def ratio_table(found: dict[str, float | None]) -> Table:
    """One line per xrserve variant: its req/s over each peer's, and its p50 overhead at c=1."""
    table = Table(title="Ratios: xrserve req/s over the peer's (tiny model), and p50 over the in-process call")
    table.add_column("xrserve variant")
    peers = [
        p for p in ("mlserver", "ray") if any(k.endswith(f"/{p} req/s c=1") and v is not None for k, v in found.items())
    ]
    for peer in peers:
        for c in (1, 16):
            table.add_column(f"/ {PEER_NAMES[peer]} c={c}", justify="right")
    table.add_column("p50 c=1 − in-process", justify="right")
    for variant, label in VARIANTS.items():
        overhead = found.get(f"{variant} p50 c=1 minus in-process p50 (ms)")
        if overhead is None:
            continue
        cells = [found.get(f"{variant}/{peer} req/s c={c}") for peer in peers for c in (1, 16)]
        table.add_row(label, *("-" if v is None else f"{v:.2f}x" for v in cells), f"+{overhead:.2f} ms")
    for variant, label in (("xrserve", "xrserve (process)"), ("xrserve_thread", "xrserve (thread)")):
        cells = {peer: found.get(f"10 ms model: {variant}/{peer} req/s c=16") for peer in ("mlserver", "ray")}
        if any(v is not None for v in cells.values()):
            text = ", ".join(f"{v:.2f}x {PEER_NAMES[p]}" for p, v in cells.items() if v is not None)
            table.caption = ((table.caption + "\n") if table.caption else "") + f"10 ms model c=16, {label}: {text}"
    return table


GOALS = (
    "server CPU per request < 200 µs (c=1 and c=16)",
    "req/s >= 1.5x MLServer fastest (c=1 and c=16)",
    "req/s >= 10x Ray Serve (c=1 and c=16)",
    "p50 at c=1 within 1 ms of the in-process call",
    "10 ms model at c=16 >= 1.2x MLServer adaptive batching",
)


def goals(rows: list[Row], found: dict[str, float | None], variant: str) -> list[tuple[str, bool | None]]:
    """The issue's goals for one xrserve variant: (what was measured, met?) in the order of GOALS."""
    ours = _find(rows, variant, "linear")
    cpu = [ours.wrk[c].cpu_us_per_request for c in sorted(ours.wrk)] if ours else []

    def at_least(peer: str, floor: float) -> tuple[str, bool | None]:
        values = [found.get(f"{variant}/{peer} req/s c={c}") for c in (1, 16)]
        if any(v is None for v in values):
            return "not measured", None
        return " / ".join(f"{v:.2f}x" for v in values), all(v >= floor for v in values)  # type: ignore[operator]

    overhead = found.get(f"{variant} p50 c=1 minus in-process p50 (ms)")
    slow_variant = "xrserve_thread" if variant == "xrserve_thread" else "xrserve"  # delay 0 has no 10 ms twin
    slow = found.get(f"10 ms model: {slow_variant}/mlserver req/s c=16")
    return [
        (" / ".join(f"{v:,.0f} µs" for v in cpu) or "not measured", all(v < 200 for v in cpu) if cpu else None),
        at_least("mlserver", 1.5),
        at_least("ray", 10),
        ("not measured", None) if overhead is None else (f"+{overhead:.2f} ms", overhead <= 1.0),
        ("not measured", None) if slow is None else (f"{slow:.2f}x", slow >= 1.2),
    ]


def goal_table(rows: list[Row], found: dict[str, float | None]) -> tuple[Table, dict[str, Any]]:
    """Goals by xrserve variant; the first column (process, delay 1 ms) is the configuration the issue names."""
    variants = [v for v in VARIANTS if _find(rows, v, "linear")]
    table = Table(title="Goals")
    table.add_column("goal")
    for variant in variants:
        table.add_column(VARIANTS[variant], justify="right")
    checked = {variant: goals(rows, found, variant) for variant in variants}
    for index, goal in enumerate(GOALS):
        cells = []
        for variant in variants:
            measured, met = checked[variant][index]
            mark = "" if met is None else (" [green]yes[/]" if met else " [red]no[/]")
            cells.append(measured + mark)
        table.add_row(goal, *cells)
    as_json = {
        variant: [
            {"goal": goal, "measured": measured, "met": met}
            for goal, (measured, met) in zip(GOALS, checked[variant], strict=True)
        ]
        for variant in variants
    }
    return table, as_json


def report(rows: list[Row], reference: InProcess) -> dict[str, Any]:
    """Print the tables, ratios and goals; return the same as a JSON-able dict."""
    console.print(linear_table([r for r in rows if r.kind == "linear"], reference))
    console.print(slow_table([r for r in rows if r.kind == "slow"], reference))
    found = ratios(rows, reference)
    table = ratio_table(found)
    if table.row_count:
        console.print(table)
    runs = [run for row in rows for run in (*row.wrk.values(), *row.latency.values())]
    disturbed = [run for run in runs if run.disturbed]
    if disturbed:
        worst = max(run.foreign_cores for run in disturbed)
        console.print(
            f"[yellow]*[/] {len(disturbed)} of {len(runs)} windows ran while other processes used "
            f">= {QUIET_CORES} cores (up to {worst:.2f}): those numbers are low."
        )
    table, checked = goal_table(rows, found)
    if table.columns[1:]:
        console.print(table)
    return {"in_process": asdict(reference), "rows": [_row_json(r) for r in rows], "ratios": found, "goals": checked}


def _row_json(row: Row) -> dict[str, Any]:
    data = asdict(row)
    for c, run in row.wrk.items():
        data["wrk"][c].update(rps=run.rps, cpu_us_per_request=run.cpu_us_per_request)
    return data


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (~2 minutes, noisier)")
    parser.add_argument(
        "--only",
        default=",".join(SERVERS),
        help=f"comma-separated servers to run, from {', '.join(SERVERS)} (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (repositories, logs)")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run the benchmark, its servers and wrk at this niceness; on a shared machine -10 (root) "
        "makes other work yield to the measurement instead of waiting for it to go quiet",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SERVERS))
    if unknown:
        parser.error(f"--only: unknown server(s) {unknown}; choose from {', '.join(SERVERS)}")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through `running`, which ends the server's tree


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    plan = Plan.quick() if args.quick else Plan()
    onnx = work / "model.onnx"
    export_linear(onnx)
    x = request_input()
    body = request_body(x)
    body_file = work / "request.json"
    body_file.write_bytes(body)
    expected = LinearModel(onnx)(x)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    rows: list[Row] = []
    # each measurement waits (bounded per window and per run) until processes other than the server and us
    # use under QUIET_CORES: on 2 cores a test suite or a compiler beside the bench halves a server's
    # throughput; a window still run beside foreign load is marked in the tables. With priority
    # (--nice < 0), measure beside others without waiting.
    gate = procs.QuietGate(cores=QUIET_CORES, budget_s=plan.quiet_wait_s if args.nice >= 0 else 0.0)
    with Progress(*columns, console=console, refresh_per_second=4) as progress:
        for venv, server in ((MLSERVER_VENV, "mlserver"), (RAY_VENV, "ray")):
            if server in args.only:
                venv.ensure(progress)
        specs = [SPECS[name](work, onnx) for name in SERVERS if name in args.only]
        total = 1 + sum(1 + len(steps_of(t)) for spec in specs for t in spec.targets)
        overall = progress.add_task("serving overhead", total=total)
        reference = measure_in_process(onnx, x, 20000 if not args.quick else 5000)
        progress.advance(overall)
        for spec in specs:
            task = progress.add_task(f"starting {spec.label}", total=None)
            with running(spec, work, body, expected, args.nice) as server:
                progress.remove_task(task)
                progress.advance(overall)
                for target in spec.targets:
                    rows.append(measure_target(spec, target, server, body, body_file, plan, gate, progress, overall))
    result = report(rows, reference)
    result["plan"] = asdict(plan)
    result["provenance"] = provenance()
    return result


def provenance() -> dict[str, Any]:
    """What was measured: the commit, whether src/ had uncommitted edits, and the machine."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", "--", "src")),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "niceness": os.nice(0),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    signal.signal(signal.SIGTERM, _on_sigterm)
    prioritize(os.getpid(), args.nice)  # wrk and the latency client run in this session
    work = Path(tempfile.mkdtemp(prefix="xrserve-bench-"))
    try:
        result = run(args, work)
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
