"""The scheduler seen from outside: batching, deadlines, bounded queues, priority."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from tests.conftest import Server, infer_body


def post(server: Server, model: str, value: float, **parameters) -> httpx.Response:
    body = infer_body("x", np.full((1, 4), value, np.float32))
    if parameters:
        body["parameters"] = parameters
    with server.client() as client:
        return client.post(f"/v2/models/{model}/infer", json=body)


def test_concurrent_requests_share_batches(server: Server) -> None:
    batches_before = server.metric("xrserve_batch_size_count", model="batched")
    requests_before = server.metric("xrserve_batch_size_sum", model="batched")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: post(server, "batched", i), range(16)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for i, answer in enumerate(answers):  # each caller gets its own row back
        y = answer.json()["outputs"][0]
        assert y["data"] == [i + 1.0] * 4
    batches = server.metric("xrserve_batch_size_count", model="batched") - batches_before
    served = server.metric("xrserve_batch_size_sum", model="batched") - requests_before
    assert served == 16
    assert batches < 16, "concurrent requests should have been computed in shared batches"
    sizes = [a.json()["outputs"][1]["data"][0] for a in answers]
    assert max(sizes) > 1 and max(sizes) <= 8


def test_expired_deadline_is_answered_not_computed(server: Server) -> None:
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(post, server, "serial", 0.0)  # occupies the only instance for 150 ms
        time.sleep(0.03)
        before = server.metric("xrserve_inference_failures_total", model="serial", reason="deadline")
        late = post(server, "serial", 1.0, deadline_ms=20)
        assert blocker.result().status_code == 200
    assert late.status_code == 408
    assert "deadline" in late.json()["error"] and "not computed" in late.json()["error"]
    assert server.metric("xrserve_inference_failures_total", model="serial", reason="deadline") == before + 1


def test_deadline_in_header_and_invalid_deadline(server: Server) -> None:
    with server.client() as client:
        ok = client.post("/v2/models/serial/infer", json=infer_body("x", np.zeros((1, 4), np.float32)),
                         headers={"X-Deadline-Ms": "5000"})
        assert ok.status_code == 200
        bad = client.post("/v2/models/serial/infer",
                          json={**infer_body("x", np.zeros((1, 4), np.float32)), "parameters": {"deadline_ms": -5}})
        assert bad.status_code == 400 and "deadline_ms" in bad.json()["error"]


def test_full_queue_says_when_to_retry(server: Server) -> None:
    with ThreadPoolExecutor(10) as pool:  # serial: 1 running + queue_size 4; 150 ms each
        answers = list(pool.map(lambda i: post(server, "serial", i), range(10)))
    rejected = [a for a in answers if a.status_code == 503]
    assert rejected, [a.status_code for a in answers]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in rejected)
    assert "queue" in rejected[0].json()["error"]
    assert sum(a.status_code == 200 for a in answers) >= 5


def test_interactive_overtakes_queued_bulk(server: Server) -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def send(label: str, priority: str) -> None:
        answer = post(server, "serial", 0.0, priority=priority)
        assert answer.status_code == 200, answer.text
        with lock:
            finished.append(label)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, "bulk-0", "bulk")]
        time.sleep(0.05)  # bulk-0 is now computing; the next ones queue
        futures += [pool.submit(send, f"bulk-{i}", "bulk") for i in (1, 2)]
        time.sleep(0.05)
        futures.append(pool.submit(send, "interactive", "interactive"))
        for future in futures:
            future.result()
    assert finished.index("interactive") < finished.index("bulk-1"), finished
    assert finished.index("interactive") < finished.index("bulk-2"), finished
