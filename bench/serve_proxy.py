"""What one more hop would cost the front: Serve's HTTP proxy to a replica, against uvicorn serving the same handler.

The xrserve front runs as its own processes that reach the models through handles
(docs/scaling.md, "The front"). The alternative puts the front itself in Serve replicas
behind Serve's HTTP proxy: then every request crosses the proxy -> front-replica hop before
the front -> model-replica hop. This measures that extra hop alone, side by side in one run:
the same trivial JSON handler (echo 64 floats) served by uvicorn in a process of its own, and
as a Serve deployment behind Serve's proxy on a local Ray instance. Same client (httpx,
keep-alive, one request at a time), same body.

    .venv/bin/python bench/serve_proxy.py          # ~1 minute
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "serve_proxy.json"
REQUESTS = 600
console = Console()

APP = """
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())

app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(url: str) -> list[float]:
    body = json.dumps({"x": [0.5] * 64}).encode()
    latencies = []
    with httpx.Client(timeout=30) as client:
        for i in range(REQUESTS + 50):
            started = time.perf_counter()
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
            response.raise_for_status()
            if i >= 50:  # warm-up
                latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies)


def wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={"x": []}, timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    rows: dict[str, list[float]] = {}
    port = free_port()
    app_file = Path(os.environ.get("TMPDIR", "/tmp")) / "xrserve_bench_echo_app.py"
    app_file.write_text(APP)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "xrserve_bench_echo_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=app_file.parent,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/echo")
        console.print("uvicorn ...")
        rows["uvicorn, the handler in its process"] = measure(f"http://127.0.0.1:{port}/echo")
    finally:
        server.terminate()
        server.wait()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve
    from starlette.requests import Request

    port = free_port()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=128 << 20)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        @serve.deployment(ray_actor_options={"num_cpus": 0.25})
        class Echo:
            async def __call__(self, request: Request) -> dict:
                return await request.json()  # type: ignore[no-any-return]

        serve.run(Echo.bind(), name="echo", route_prefix="/echo")
        wait_for(f"http://127.0.0.1:{port}/echo")
        console.print("Serve's proxy ...")
        rows["Serve's HTTP proxy -> a replica"] = measure(f"http://127.0.0.1:{port}/echo")
    finally:
        serve.shutdown()
        ray.shutdown()
    table = Table(title=f"one JSON echo, {REQUESTS} requests one at a time")
    for column in ("path", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    summary = {}
    for name, latencies in rows.items():
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
        summary[name] = {"p50_ms": p50, "p99_ms": p99}
        table.add_row(name, f"{p50:.2f}", f"{p99:.2f}")
    console.print(table)
    (direct, proxied) = (statistics.median(v) for v in rows.values())
    console.print(f"the proxy hop adds {proxied - direct:.2f} ms at p50 ({proxied / direct:.2f}x)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "rows": summary}, indent=2))


if __name__ == "__main__":
    main()
