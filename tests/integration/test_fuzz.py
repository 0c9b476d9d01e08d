"""Schemathesis generates requests from /openapi.json and runs every check on the answers.

`--checks all`: no 5xx; every status, content type, header and body as the document
declares them; schema-valid requests served and schema-invalid ones refused. It runs
against its own server (an admin key, so admin routes are fuzzed too, which may unload
models) with a repository of models that cannot legitimately fail, a user's GGUF model, ONNX
model and ONNX image model (`colour`) included. `schemathesis.toml` beside this file names the models the
requests draw from and the routes where a schema-valid request may not fit the model
it names (and so gets a 400).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import build_repository, cli, start_server, write_colour_model

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Routes that run a whole generative pipeline per request (seconds each: speech synthesis
# of the generated text, an NPC turn through ASR, the LLM and TTS) get fewer examples, so
# the fuzz run stays within minutes; every other route gets the full budget. The
# repository routes (load, unload) go last, so that the others find their models loaded.
SLOW_ROUTES = "^/v1/(npc/|audio/speech)"
REPOSITORY_ROUTES = "^/v2/repository/"


def schemathesis(url: str, key: str, *filters: str, examples: int) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "-H",
            f"Authorization: Bearer {key}",
            "--request-timeout",
            "60",
            "--suppress-health-check",
            "all",
            "--continue-on-failure",
            *filters,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output[-8000:]
    assert " passed" in output and "failed" not in output.split("SUMMARY")[-1], output[-3000:]
    return output


@pytest.mark.timeout(1200)
def test_openapi_fuzzing_passes_every_check(tmp_path) -> None:
    repo = tmp_path / "repo"
    build_repository(repo)
    for model in ("crashy", "serial", "batched", "broken"):  # crashing (503) is their job; keep them out
        subprocess.run(["rm", "-rf", str(repo / model)], check=True)
    # the GGUF model stays, with a short context: a schema-valid request may leave out max_tokens,
    # which means "up to the end of the context", and 2048 tokens would take half a minute here
    (repo / "my-llm" / "1" / "model.toml").write_text(
        textwrap.dedent("""
        runtime = "gguf"
        max_streams = 2
        parameters = { context = 128 }
    """)
    )
    write_colour_model(repo)  # a user's ONNX model that takes an image: /v1/vision, OIP with BYTES
    key = cli("keys", "create", "--scope", "admin", "--quiet", data_dir=tmp_path / "data").stdout.strip()
    server = start_server(tmp_path, repo=repo)
    try:
        schemathesis(server.url, key, "--exclude-path-regex", f"{SLOW_ROUTES}|{REPOSITORY_ROUTES}", examples=50)
        schemathesis(server.url, key, "--include-path-regex", SLOW_ROUTES, examples=8)
        schemathesis(server.url, key, "--include-path-regex", REPOSITORY_ROUTES, examples=20)
        assert server.process.poll() is None
    finally:
        server.stop()
