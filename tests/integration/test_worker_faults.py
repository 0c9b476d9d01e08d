"""`kill -9` of a model's worker process under load: only the requests it was computing fail,
each with a 503 that says why; it restarts; the other models never notice. Worker
processes name themselves `xrs <model>` (what `ps -o comm` and `top` show)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import Server, build_repository, infer_body, start_server

TINY = infer_body("x", np.ones((1, 64), np.float32))
EMBED = {"model": "minilm", "input": ["a red apple"]}


def worker_pid(server: Server, model: str) -> int:
    from bench.llm_support.procs import tree_pids

    for pid in tree_pids(server.process.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == f"xrs {model}"[:15]:
                return pid
        except OSError:
            continue
    raise AssertionError(f"no worker process named 'xrs {model}'")


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("faults")
    build_repository(tmp / "repo")
    server = start_server(tmp, "--only", "tiny", "--only", "minilm", "--only", "smollm2", repo=tmp / "repo",
                          admin_key=True)  # fmt: skip
    yield server
    server.stop()


def loop(server: Server, path: str, body: dict, stop: threading.Event, out: list) -> None:
    with server.client() as client:
        while not stop.is_set():
            response = client.post(path, json=body)
            message = response.json().get("error", "") if response.status_code != 200 else ""
            out.append((time.monotonic(), response.status_code, str(message)))


def test_killing_an_onnx_worker_fails_only_its_in_flight_requests(fault_server: Server) -> None:
    stop, tiny, embeddings = threading.Event(), [], []
    threads = [threading.Thread(target=loop, args=(fault_server, "/v2/models/tiny/infer", TINY, stop, tiny))
               for _ in range(4)]  # fmt: skip
    threads.append(threading.Thread(target=loop, args=(fault_server, "/v1/embeddings", EMBED, stop, embeddings)))
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    victim = worker_pid(fault_server, "tiny")
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = killed + 60  # the worker restarts while the clients go on; wait for its first answer
    while time.monotonic() < deadline and not any(s == 200 and at > killed + 0.5 for at, s, _ in tiny[-20:]):
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    failed = [(s, m) for _, s, m in tiny if s != 200]
    last_failure = max(at for at, s, _ in tiny if s != 200)
    recovered = min(at for at, s, _ in tiny if at > last_failure and s == 200) - killed
    print(f"\nkill -9 of the tiny worker: {len(failed)} of {len(tiny)} requests failed, recovered in {recovered:.2f} s")
    assert 1 <= len(failed) <= 4, failed  # at most what the 4 clients had in flight
    assert all(s == 503 and "crashed" in m and "restarted" in m for s, m in failed), failed
    assert worker_pid(fault_server, "tiny") != victim  # a new process
    assert Counter(s for _, s, _ in embeddings) == {200: len(embeddings)}  # the other model never noticed


def test_killing_the_llm_mid_stream_ends_that_stream_with_a_reason(fault_server: Server) -> None:
    client = openai.OpenAI(base_url=fault_server.url + "/v1", api_key=fault_server.admin_key, max_retries=0)
    ask = [{"role": "user", "content": "Write a very long story about a dragon."}]
    stream = client.chat.completions.create(model="smollm2", messages=ask, max_tokens=400, stream=True)
    chunks = 0
    with pytest.raises(openai.APIError, match="crashed"):
        for _chunk in stream:
            chunks += 1
            if chunks == 3:
                killed = time.monotonic()
                os.kill(worker_pid(fault_server, "smollm2"), signal.SIGKILL)
    with httpx.Client(base_url=fault_server.url, headers={"Authorization": f"Bearer {fault_server.admin_key}"}) as c:
        assert c.post("/v2/models/tiny/infer", json=TINY).status_code == 200  # others keep answering
    deadline = time.monotonic() + 120
    while True:  # the restarted worker answers again
        try:
            answer = client.chat.completions.create(model="smollm2", messages=ask, max_tokens=4)
            break
        except openai.APIStatusError as error:
            assert error.status_code == 503 and time.monotonic() < deadline, error
            time.sleep(0.5)
    print(f"\nkill -9 of the LLM worker mid-stream: the stream failed, answering again after "
          f"{time.monotonic() - killed:.1f} s")  # fmt: skip
    assert answer.choices[0].message.content is not None
