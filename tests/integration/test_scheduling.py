"""The scheduler seen from outside: batching, deadlines, bounded queues, priority."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np

from tests.conftest import SERIAL_HOLD, Server, infer_body


def post(server: Server, model: str, value: float, **parameters) -> httpx.Response:
    body = infer_body("x", np.full((1, 4), value, np.float32))
    if parameters:
        body["parameters"] = parameters
    with server.client() as client:
        return client.post(f"/v2/models/{model}/infer", json=body)


@contextmanager
def serial_held(server: Server) -> Iterator[None]:
    """Keep the `serial` model computing until the block ends, so a queue can be built behind it."""
    hold = server.repo.parent / SERIAL_HOLD
    hold.touch()
    try:
        yield
    finally:
        hold.unlink()


def wait_until_taken(server: Server, model: str, requests_before: float, count: int = 1, queued: int = 0) -> None:
    """Until `count` more requests were admitted and exactly `queued` of them wait.

    With `queued=0` the first is computing. Tests send each request only after the one
    before it was seen queued, while `serial_held` keeps the model busy: arrival order
    and queue contents are then facts, not hopes about a fixed sleep on a busy machine
    (where CI once saw a later request arrive before one sent earlier).
    """
    requests = re.compile(rf'^xrserve_inference_requests_total{{model="{model}",version="1"}} (\S+)$', re.M)
    depth = re.compile(rf'^xrserve_queue_depth{{model="{model}",version="1"}} (\S+)$', re.M)
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=server.url) as client:
        while time.monotonic() < deadline:
            text = client.get("/metrics").text
            admitted, waiting = requests.search(text), depth.search(text)
            if admitted and float(admitted[1]) >= requests_before + count and waiting and float(waiting[1]) == queued:
                return
    raise AssertionError(f"{count} requests to {model} with {queued} of them queued not seen within 10 s")


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
        requests = server.metric("xrserve_inference_requests_total", model="serial")
        before = server.metric("xrserve_inference_failures_total", model="serial", reason="deadline")
        with serial_held(server):
            blocker = pool.submit(post, server, "serial", 0.0)  # occupies the only instance
            wait_until_taken(server, "serial", requests)
            late = post(server, "serial", 1.0, deadline_ms=20)
        assert blocker.result().status_code == 200
    assert late.status_code == 408
    assert "deadline" in late.json()["error"] and "not computed" in late.json()["error"]
    assert server.metric("xrserve_inference_failures_total", model="serial", reason="deadline") == before + 1


def test_deadline_in_header_and_invalid_deadline(server: Server) -> None:
    with server.client() as client:
        ok = client.post(
            "/v2/models/serial/infer",
            json=infer_body("x", np.zeros((1, 4), np.float32)),
            headers={"X-Deadline-Ms": "5000"},
        )
        assert ok.status_code == 200
        bad = client.post(
            "/v2/models/serial/infer",
            json={**infer_body("x", np.zeros((1, 4), np.float32)), "parameters": {"deadline_ms": -5}},
        )
        assert bad.status_code == 400 and "deadline_ms" in bad.json()["error"]


def test_full_queue_says_when_to_retry(server: Server) -> None:
    requests = server.metric("xrserve_inference_requests_total", model="serial")
    with ThreadPoolExecutor(10) as pool:  # serial: 1 running + queue_size 4
        with serial_held(server):
            futures = [pool.submit(post, server, "serial", i) for i in range(10)]
            wait_until_taken(server, "serial", requests, count=5, queued=4)
            give_up = time.monotonic() + 10
            while sum(f.done() for f in futures) < 5 and time.monotonic() < give_up:
                time.sleep(0.01)  # while held, only refused requests can have been answered
        answers = [f.result() for f in futures]
    rejected = [a for a in answers if a.status_code == 503]
    assert len(rejected) == 5, [a.status_code for a in answers]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in rejected)
    assert "queue" in rejected[0].json()["error"]
    assert sum(a.status_code == 200 for a in answers) == 5


def test_interactive_overtakes_queued_bulk(server: Server) -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def send(label: str, priority: str) -> None:
        answer = post(server, "serial", 0.0, priority=priority)
        assert answer.status_code == 200, answer.text
        with lock:
            finished.append(label)

    with ThreadPoolExecutor(4) as pool:
        requests = server.metric("xrserve_inference_requests_total", model="serial")
        with serial_held(server):
            futures = [pool.submit(send, "bulk-0", "bulk")]
            wait_until_taken(server, "serial", requests)  # bulk-0 is computing; the next ones queue
            for queued, (label, priority) in enumerate(
                [("bulk-1", "bulk"), ("bulk-2", "bulk"), ("interactive", "interactive")], start=1
            ):
                futures.append(pool.submit(send, label, priority))  # each surely queued before the next
                wait_until_taken(server, "serial", requests, count=1 + queued, queued=queued)
        for future in futures:
            future.result()
    assert finished == ["bulk-0", "interactive", "bulk-1", "bulk-2"]


def test_a_client_that_goes_away_cancels_its_queued_request(server: Server) -> None:
    """The queued request of a client that hung up is never computed; the audit says 499."""
    import json
    import socket

    from tests.conftest import audit_records

    requests = server.metric("xrserve_inference_requests_total", model="serial")
    batches = server.metric("xrserve_batch_size_count", model="serial")
    body = json.dumps(infer_body("x", np.zeros((1, 4), np.float32))).encode()
    raw = (
        f"POST /v2/models/serial/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.admin_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with ThreadPoolExecutor(1) as pool:
        with serial_held(server):
            running = pool.submit(post, server, "serial", 1.0)
            wait_until_taken(server, "serial", requests)  # computing, held
            port = int(server.url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as leaving:
                leaving.sendall(raw)
                wait_until_taken(server, "serial", requests, count=2, queued=1)  # queued behind the held one
            wait_until_taken(server, "serial", requests, count=2, queued=0)  # the hang-up took it out of the queue
        assert running.result().status_code == 200
    assert server.metric("xrserve_batch_size_count", model="serial") == batches + 1  # only the first was computed
    records = audit_records(server.data_dir, lambda rs: any(r["status"] == 499 for r in rs))
    assert any(r["status"] == 499 and r["route"] == "/v2/models/{model_name}/infer" for r in records)
