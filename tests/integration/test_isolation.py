"""A model whose native code crashes takes down only its own worker process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.conftest import Server, infer_body


def crashy(client, value: float):
    return client.post("/v2/models/crashy/infer", json=infer_body("x", np.array([value], np.float32)))


def test_segfault_fails_in_flight_request_restarts_worker_others_keep_answering(server: Server, admin) -> None:
    assert crashy(admin, 1.0).json()["outputs"][0]["data"] == [2.0]
    restarts = server.metric("xrserve_worker_restarts_total", model="crashy")

    with ThreadPoolExecutor(2) as pool:
        crash = pool.submit(crashy, admin, -1.0)
        # minilm answers while crashy dies and comes back
        texts = [
            admin.post("/v2/models/minilm/infer", json=infer_body("text", np.array([f"still here {i}"]), "BYTES"))
            for i in range(5)
        ]
        answer = crash.result()
    assert all(t.status_code == 200 for t in texts)
    assert answer.status_code == 503
    assert "crashed (killed by SIGSEGV)" in answer.json()["error"] and "restarted" in answer.json()["error"]
    assert "Retry-After" in answer.headers

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        recovered = crashy(admin, 3.0)
        if recovered.status_code == 200:
            break
        assert recovered.status_code == 503
        time.sleep(0.2)
    assert recovered.json()["outputs"][0]["data"] == [6.0]
    assert server.metric("xrserve_worker_restarts_total", model="crashy") == restarts + 1
    assert server.process.poll() is None
