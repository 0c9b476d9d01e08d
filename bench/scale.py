"""The Ray Serve engine against the embedded engine, side by side in one run.

Two servers, one at a time, on the same model repository: `xrserve serve` (embedded) and
`xrserve serve --engine ray` (a local Ray instance; each model version a Serve application).

  overhead   per request, through the same HTTP routes: the tiny ONNX model (OIP JSON, 64 floats
             in, 16 out) and `hands` (a JPEG photo to /v1/vision/hands), at 1 and 16 concurrent
             clients: p50 and p99 latency, requests/s, and ray minus embedded at p50. Where the
             time goes (means from /metrics): the front's handle round trip per request, the
             one-way hop (front sending to replica receiving, wall clocks), and the replica's own
             queue + compute; round trip minus replica is both hops (router, serialisation, the
             replica's event loop).
  replicas   a CPU-bound model (an ONNX MLP, one intra-op thread, ~10 ms a request) served by one
             and by two replicas (`[scaling]`: replicas 1 or 2, cpus 0.5 each), 8 clients, req/s.
             The embedded engine with instances 1 and 2 is the reference.

    .venv/bin/python bench/scale.py            # ~6 minutes on 2 cores
    .venv/bin/python bench/scale.py --quick    # ~3 minutes, noisier

Results: bench/results/scale.json. Latency of the same request moves by tens of percent from
hour to hour on this machine; the ratios between rows measured minutes apart are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "scale.json"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from llm_support import procs  # noqa: E402 - bench/ is on sys.path as this script's folder

from tests.conftest import write_model, write_tiny_model  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
PHOTO = ROOT / "tests" / "data" / "hand_images"
MLP_WIDTH, MLP_LAYERS = 1024, 6


@dataclass
class Run:
    engine: str
    model: str
    clients: int
    requests: int
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    front_ms: float | None = None  # ray: the front's mean handle round trip per request (its /metrics)
    hop_ms: float | None = None  # ray: the mean one-way hop, front sending to replica receiving
    replica_ms: float | None = None  # ray: the replica's mean queue + compute for the same requests


def export_mlp(path: Path) -> None:
    """A CPU-bound ONNX model: six 1024x1024 layers, batch 1 (about 6 M multiply-adds per layer)."""
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(MLP_LAYERS):
        layers += [torch.nn.Linear(MLP_WIDTH, MLP_WIDTH), torch.nn.ReLU()]
    module = torch.nn.Sequential(*layers).eval()
    torch.onnx.export(
        module, (torch.randn(1, MLP_WIDTH),), str(path), input_names=["x"], output_names=["y"], dynamo=False
    )


def build_repository(repo: Path, engine: str) -> None:
    """The same models for both engines; `mlp2` is two instances in one process (embedded) or two replicas (ray)."""
    write_tiny_model(repo)
    for replicas in (1, 2):
        directory = write_model(
            repo,
            f"mlp{replicas}",
            "1",
            f"""
            runtime = "onnx"
            instances = {replicas if engine == "embedded" else 1}
            threads = 1
            inputs = [{{ name = "x", datatype = "FP32", shape = [1, {MLP_WIDTH}] }}]
            outputs = [{{ name = "y", datatype = "FP32", shape = [1, {MLP_WIDTH}] }}]
            [scaling]
            replicas = {replicas}
            cpus = 0.5
            """,
        )
        export_mlp(directory / "model.onnx")


def request_of(model: str) -> tuple[str, dict[str, Any]]:
    """The route and httpx arguments of one request to `model`."""
    if model == "hands":
        photo = sorted(PHOTO.glob("*/*.jpg"))[0].read_bytes()
        return "/v1/vision/hands?max_hands=1", {"content": photo, "headers": {"Content-Type": "image/jpeg"}}
    width = 64 if model == "tiny" else MLP_WIDTH
    x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, width], "data": x.ravel().tolist()}]}
    return f"/v2/models/{model}/infer", {
        "content": json.dumps(body).encode(),
        "headers": {"Content-Type": "application/json"},
    }


async def load(
    url: str, model: str, clients: int, count: int, progress: Progress, task: Any
) -> tuple[list[float], int, float]:
    route, kwargs = request_of(model)
    latencies: list[float] = []
    errors = 0
    left = count

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            started = time.perf_counter()
            response = await http.post(route, **kwargs)
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1
            progress.advance(task)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return latencies, errors, elapsed


def mean_seconds(url: str, family: str, model: str) -> tuple[float, float]:
    """(sum, count) of a histogram over the series of one model."""
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for metric in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in metric.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == f"{family}_sum":
                total += sample.value
            elif sample.name == f"{family}_count":
                count += sample.value
    return total, count


def measure(url: str, engine: str, model: str, clients: int, count: int, progress: Progress) -> Run:
    task = progress.add_task(f"{engine:8} {model:6} c={clients:<2}", total=count)
    asyncio.run(load(url, model, clients, max(clients * 4, count // 10), progress, task))  # warm-up
    progress.reset(task, total=count)
    if engine == "ray":
        time.sleep(2.5)  # the replica's series are reported every 2 s
    front0 = mean_seconds(url, "xrserve_request_seconds", model)
    replica0 = mean_seconds(url, "xrserve_replica_request_seconds", model)
    hop0 = mean_seconds(url, "xrserve_replica_hop_seconds", model)
    latencies, errors, elapsed = asyncio.run(load(url, model, clients, count, progress, task))
    if engine == "ray":
        time.sleep(2.5)
    front1 = mean_seconds(url, "xrserve_request_seconds", model)
    replica1 = mean_seconds(url, "xrserve_replica_request_seconds", model)
    hop1 = mean_seconds(url, "xrserve_replica_hop_seconds", model)

    def mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float | None:
        n = after[1] - before[1]
        return (after[0] - before[0]) / n * 1000 if n else None

    progress.remove_task(task)
    latencies.sort()
    return Run(
        engine,
        model,
        clients,
        count,
        statistics.median(latencies) if latencies else float("nan"),
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan"),
        len(latencies) / elapsed,
        errors,
        mean_ms(front0, front1) if engine == "ray" else None,
        mean_ms(hop0, hop1) if engine == "ray" else None,
        mean_ms(replica0, replica1) if engine == "ray" else None,
    )


def serve(engine: str, repo: Path, work: Path) -> tuple[Any, str]:
    args = ["--dev", "--model-repository", str(repo), "--data-dir", str(work / engine / "data")]
    args += [arg for model in ("tiny", "mlp1", "mlp2", "hands") for arg in ("--only", model)]  # hands is built in
    if engine == "ray":
        args += ["--engine", "ray"]
    return procs.start_xrserve(args, work / f"{engine}.log", timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (noisier)")
    args = parser.parse_args()
    scale = 0.4 if args.quick else 1.0
    counts = {("tiny", 1): 600, ("tiny", 16): 2400, ("hands", 1): 80, ("hands", 16): 240}
    mlp_s = 8 if args.quick else 15
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="xrserve-scale-") as tmp:
        work = Path(tmp)
        console.print("exporting the models (tiny, the MLP) ...")
        for engine in ("embedded", "ray"):
            build_repository(work / engine / "repo", engine)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        for engine in ("embedded", "ray"):
            console.print(f"starting xrserve ({engine}) ...")
            process, url = serve(engine, work / engine / "repo", work)
            try:
                with Progress(*columns, console=console) as progress:
                    for (model, clients), count in counts.items():
                        runs.append(measure(url, engine, model, clients, int(count * scale), progress))
                    for model in ("mlp1", "mlp2"):
                        # as many requests as ~mlp_s seconds take at one replica's ~10 ms each, per replica
                        count = int(mlp_s * 100 * int(model[-1]))
                        runs.append(measure(url, engine, model, 8, count, progress))
            finally:
                procs.end(process)
    report(runs)


def report(runs: list[Run]) -> None:
    by = {(r.engine, r.model, r.clients): r for r in runs}
    table = Table(title="per request: ray engine vs embedded (same routes, same client, same minutes)")
    for column in (
        "model",
        "clients",
        "embedded p50 / p99 ms",
        "ray p50 / p99 ms",
        "ray - embedded p50",
        "req/s emb / ray",
        "ray means ms: round trip / hop / replica",
    ):
        table.add_column(column, justify="right")
    overhead: dict[str, float] = {}
    for model, clients in (("tiny", 1), ("tiny", 16), ("hands", 1), ("hands", 16)):
        emb, ray = by[("embedded", model, clients)], by[("ray", model, clients)]
        overhead[f"{model} c={clients}"] = ray.p50_ms - emb.p50_ms
        table.add_row(
            model,
            str(clients),
            f"{emb.p50_ms:.2f} / {emb.p99_ms:.2f}",
            f"{ray.p50_ms:.2f} / {ray.p99_ms:.2f}",
            f"{ray.p50_ms - emb.p50_ms:+.2f} ms ({ray.p50_ms / emb.p50_ms:.2f}x)",
            f"{emb.rps:.0f} / {ray.rps:.0f}",
            f"{ray.front_ms or 0:.2f} / {ray.hop_ms or 0:.2f} / {ray.replica_ms or 0:.2f}",
        )
    console.print(table)
    table = Table(title="a CPU-bound model (ONNX MLP, one thread), 8 clients: one and two replicas")
    for column in ("engine", "1 replica req/s", "2 replicas req/s", "2 / 1"):
        table.add_column(column, justify="right")
    scaling: dict[str, float] = {}
    for engine in ("embedded", "ray"):
        one, two = by[(engine, "mlp1", 8)], by[(engine, "mlp2", 8)]
        scaling[engine] = two.rps / one.rps
        table.add_row(engine, f"{one.rps:.1f}", f"{two.rps:.1f}", f"{two.rps / one.rps:.2f}x")
    console.print(table)
    errors = sum(r.errors for r in runs)
    console.print(
        f"errors: {errors}; goal: ray adds < 2 ms at p50: " + ", ".join(f"{k} {v:+.2f} ms" for k, v in overhead.items())
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%d %H:%M"),
                "runs": [asdict(r) for r in runs],
                "overhead_p50_ms": overhead,
                "replica_scaling": scaling,
            },
            indent=2,
        )
    )
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
