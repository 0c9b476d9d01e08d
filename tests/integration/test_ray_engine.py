"""`xrserve serve --engine ray`: the same clients against models running as Ray Serve deployments.

One server for the module, on a local Ray instance it starts itself (this 2-core machine): a
user ONNX model (`tiny`), a sleepy Python model that batches (`echo`) and one that is slow
(`slow`), and the built-in LLM, embeddings and hands. What a user would notice is tested through
the real clients (tritonclient, openai, the session WebSocket, the CLI); what happens inside a
replica (batching, deadlines, a cancelled stream) through the replicas' own series on /metrics.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort
import openai
import pytest
import tritonclient.http as triton

from tests.conftest import (
    MODELS as MODELS_DIR,
)
from tests.conftest import (
    Server,
    audit_records,
    build_repository,
    cli,
    infer_body,
    start_server,
    write_model,
    write_sleepy_model,
)
from tests.session_client import SessionClient
from tests.vision import media

pytestmark = pytest.mark.ray

MODELS = ("tiny", "echo", "slow", "smollm2", "minilm", "hands")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ray")
    repo = tmp / "repo"
    build_repository(repo)
    write_sleepy_model(repo, "echo", sleep_ms=30)  # max_batch_size 4
    write_model(  # one request at a time, 300 ms each
        repo,
        "slow",
        "1",
        """
        runtime = "python"
        entrypoint = "sleepy.py:Sleepy"
        isolation = "inline"
        parameters = { sleep_ms = 300 }
        inputs = [{ name = "x", datatype = "FP32", shape = [1, 4] }]
        outputs = [{ name = "y", datatype = "FP32", shape = [1, 4] }]
        """,
        {"sleepy.py": MODELS_DIR / "sleepy.py"},
    )
    only = [arg for name in (*MODELS, "bad") for arg in ("--only", name)]  # bad: written later, by its test
    srv = start_server(tmp, "--engine", "ray", *only, repo=repo, admin_key=True, timeout=300)
    yield srv
    srv.stop()


def replica_series(server: Server, name: str, **labels: str) -> float:
    """A replica series (reported every 2 s, so read again until it stops changing is not needed: callers poll)."""
    return server.metric(f"xrserve_replica_{name}", **labels)


def wait_for(check, timeout: float = 20.0, every: float = 0.5):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(every)


def test_oip_infer_with_tritonclient_matches_the_model_file(server: Server) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    data = triton.InferInput("x", list(x.shape), "FP32")
    data.set_data_from_numpy(x)
    result = client.infer("tiny", [data], headers=headers)
    expected = ort.InferenceSession(str(server.repo / "tiny" / "1" / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-6)
    assert client.is_model_ready("tiny", headers=headers)
    assert client.get_model_metadata("tiny", headers=headers)["versions"] == ["1"]


def test_a_bad_request_is_refused_at_the_front_with_the_same_message(server: Server) -> None:
    with server.client() as client:
        wrong = client.post("/v2/models/tiny/infer", json=infer_body("x", np.ones((1, 3), np.float32)))
        assert wrong.status_code == 400 and "expects [-1, 64]" in wrong.json()["error"]
        unknown = client.post("/v2/models/nope/infer", json=infer_body("x", np.ones((1, 64), np.float32)))
        assert unknown.status_code == 404 and "tiny" in unknown.json()["error"]


def test_requests_are_batched_inside_the_replica(server: Server) -> None:
    before = replica_series(server, "batch_size_count", model="echo")
    with server.client() as client, ThreadPoolExecutor(12) as pool:
        bodies = [infer_body("x", np.full((1, 4), i, np.float32)) for i in range(36)]
        answers = list(pool.map(lambda body: client.post("/v2/models/echo/infer", json=body), bodies))
    assert [a.status_code for a in answers] == [200] * 36
    for i, answer in enumerate(answers):  # each row comes back to its own request
        assert answer.json()["outputs"][0]["data"] == [i + 1.0] * 4

    def batches() -> tuple[float, float]:
        count = replica_series(server, "batch_size_count", model="echo") - before
        return (count, replica_series(server, "batch_size_sum", model="echo")) if count else ()

    count, rows = wait_for(lambda: batches() if batches() and batches()[1] >= 36 else ())
    print(f"36 requests in {count:.0f} batches at the replica")
    assert count < 36  # the replica put several requests in one batch


def test_a_deadline_travels_with_the_request_and_expired_work_is_not_computed(server: Server) -> None:
    """`slow` takes 300 ms a request, one at a time: of four sent at once with 450 ms to live, the
    third and fourth cannot start in time. The replica answers them 408 and never computes them."""
    before = replica_series(server, "compute_seconds_count", model="slow")
    body = infer_body("x", np.ones((1, 4), np.float32), parameters={"deadline_ms": 450})
    with server.client() as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v2/models/slow/infer", json=body), range(4)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses[408] >= 1 and statuses[200] >= 1 and statuses[200] + statuses[408] == 4, statuses
    assert all("deadline" in a.json()["error"] for a in answers if a.status_code == 408)

    def computed() -> float:
        return replica_series(server, "compute_seconds_count", model="slow") - before

    assert wait_for(lambda: computed() >= statuses[200]), (statuses, computed())
    time.sleep(2.5)  # one more report from the replica
    assert computed() == statuses[200]
    assert replica_series(server, "inference_failures_total", model="slow", reason="deadline") >= statuses[408]


def test_openai_chat_streams_from_the_replica(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key, max_retries=0)
    params = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me about the moon."}],
        "max_tokens": 24,
        "temperature": 0.8,
        "seed": 1234,
    }
    whole = client.chat.completions.create(**params)
    chunks = list(client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and len([c for c in chunks if c.choices]) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens > 0


def test_a_cancelled_llm_stream_is_cancelled_on_its_replica(server: Server) -> None:
    def generated() -> float:
        return replica_series(server, "generated_tokens_total", model="smollm2")

    before = generated()
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {server.admin_key}"},
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Tell a very long story about a dragon."}],
            "max_tokens": 400,
            "stream": True,
        },
        timeout=60,
    ) as response:
        assert response.status_code == 200
        # the first chunk with text (the one before it, announcing the role, comes before any token: a client
        # leaving after it may cancel the stream before the replica generated anything, as on a loaded CI)
        assert any(line.startswith("data:") and '"content":""' not in line for line in response.iter_lines())
    # the client left after its first token: the replica's stream closes and its tokens stop far short of 400
    closed = wait_for(lambda: replica_series(server, "active_streams", model="smollm2") == 0 and generated() > before)
    assert closed, (replica_series(server, "active_streams", model="smollm2"), generated() - before)
    time.sleep(2.5)
    assert generated() - before < 200


def test_embeddings_rank_meaning(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key, max_retries=0)
    data = client.embeddings.create(model="minilm", input=["a red apple", "a fruit", "a truck"]).data
    apple, fruit, truck = (np.array(d.embedding) for d in data)
    assert apple @ fruit > apple @ truck + 0.1


def test_a_session_with_an_infer_stream_and_a_camera_stream(server: Server) -> None:
    photo = media.hand_photos()[0].read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        session.open("emb", "infer", model="minilm")
        session.send(
            {
                "type": "infer",
                "stream": "emb",
                "id": "q",
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a red apple"]}],
            }
        )
        result = session.wait_type("result", id="q")
        assert len(result["outputs"][0]["data"]) == 384
        channel = session.open("cam", "camera", models=["hands"], budget_ms=3000)["channel"]
        for sequence in range(3):
            session.send_binary(channel, sequence, photo)
            hands = session.wait_type("result", model="hands", sequence=sequence)["result"]["hands"]
            assert len(hands) == 1 and len(hands[0]["landmarks"]) == 21


def test_camera_frames_sent_faster_than_computed_are_skipped_not_queued(server: Server) -> None:
    """Latest-frame-wins holds across the hop: every frame is answered or reported skipped, in order."""
    photo = media.hand_photos()[0].read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], max_hands=1, budget_ms=3000)["channel"]
        session.send_binary(channel, 0, photo)  # found once: the frames after it are tracked, not searched
        assert session.wait_type("result", model="hands", sequence=0)["result"]["hands"]
        for sequence in range(1, 30):
            session.send_binary(channel, sequence, photo)  # back to back: far faster than hands computes
        answered, skipped, reasons = [0], [], Counter()
        while len(answered) + len(skipped) < 30:
            message = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("result", "skipped", "error"))
            assert message["type"] != "error", message
            (answered if message["type"] == "result" else skipped).append(message["sequence"])
            reasons[message.get("reason", "answered")[:40]] += 1
    print(f"30 frames back to back: {dict(reasons)}")
    assert sorted(answered + skipped) == list(range(30)) and answered == sorted(answered)
    assert len(answered) >= 3 and any("superseded" in reason for reason in reasons)


def test_keys_and_scopes_hold_and_every_request_is_audited(server: Server) -> None:
    body = infer_body("x", np.ones((1, 64), np.float32))
    assert httpx.post(f"{server.url}/v2/models/tiny/infer", json=body).status_code == 401
    key = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    refused = httpx.post(f"{server.url}/v2/models/tiny/infer", json=body, headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    records = audit_records(server.data_dir, lambda rs: any(r["status"] == 403 and r["model"] == "tiny" for r in rs))
    assert any(r["route"] == "/v2/models/{model_name}/infer" and r["status"] == 200 for r in records)


def test_ray_status_lists_applications_and_replicas(server: Server) -> None:
    shown = cli("ray", "status", "--url", server.url, "--key", server.admin_key).stdout
    for name in MODELS:
        assert f"{name}.v1" in shown
    assert "RUNNING" in shown and "READY" in shown
    status = httpx.get(f"{server.url}/v1/engine", headers={"Authorization": f"Bearer {server.admin_key}"}).json()
    assert {r["model"] for r in status["replicas"]} == set(MODELS)


def test_a_second_front_joins_the_cluster_and_uses_its_applications(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`--ray-address` of the first front's cluster: the second front finds `tiny.v1` running and uses its
    replica rather than deploying another; when it stops, the application stays for the first front."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    first = httpx.get(f"{server.url}/v1/engine", headers=headers).json()
    assert first["started_here"]
    tmp = tmp_path_factory.mktemp("second-front")
    second = start_server(
        tmp, "--engine", "ray", "--ray-address", first["address"], "--only", "tiny", repo=server.repo, admin_key=True
    )
    try:
        x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
        answers = [
            httpx.post(
                f"{s.url}/v2/models/tiny/infer",
                json=infer_body("x", x),
                headers={"Authorization": f"Bearer {s.admin_key}"},
            )
            for s in (server, second)
        ]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json()["outputs"] == answers[1].json()["outputs"]
        status = httpx.get(f"{second.url}/v1/engine", headers={"Authorization": f"Bearer {second.admin_key}"}).json()
        assert not status["started_here"] and status["address"] == first["address"]
        tiny = {r["replica"] for r in status["replicas"] if r["model"] == "tiny" and r["state"] == "READY"}
        assert tiny == {r["replica"] for r in first["replicas"] if r["model"] == "tiny" and r["state"] == "READY"}
    finally:
        second.stop()
    after = httpx.post(f"{server.url}/v2/models/tiny/infer", json=infer_body("x", x), headers=headers)
    assert after.status_code == 200


def test_a_version_that_cannot_load_says_why(server: Server) -> None:
    """Its replica fails in its constructor; Serve gives up on the application and the load route names the
    model's own error (not Serve's "Failed to update the deployments"); the other models serve on."""
    directory = server.repo / "bad" / "1"
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"not an onnx file")
    (directory / "model.toml").write_text('runtime = "onnx"\n')
    with server.client() as client:
        entries = client.post("/v2/repository/models/bad/load", timeout=300).json()
        (entry,) = [e for e in entries if e["version"] == "1"]
        assert entry["state"] == "UNAVAILABLE" and "INVALID_PROTOBUF" in entry["reason"], entries
        body = infer_body("x", np.ones((1, 64), np.float32))
        assert client.post("/v2/models/tiny/infer", json=body).status_code == 200
        refused = client.post("/v2/models/bad/infer", json=body)
        assert refused.status_code == 503 and "not ready" in refused.json()["error"]


def test_killing_a_replica_under_load_fails_its_requests_with_503_and_serve_replaces_it(server: Server) -> None:
    """Four clients keep `slow` (300 ms a request) busy; its replica is killed mid-request. What was at
    the replica fails with a 503 that says why; what is sent meanwhile waits for the new replica."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}

    def slow_replica() -> dict | None:
        replicas = httpx.get(f"{server.url}/v1/engine", headers=headers).json()["replicas"]
        return next((r for r in replicas if r["model"] == "slow" and r["state"] == "READY"), None)

    victim = slow_replica()
    assert victim is not None
    body = infer_body("x", np.ones((1, 4), np.float32))
    outcomes: list[tuple[float, float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers=headers, timeout=60) as client:
            while not stop.is_set():
                sent = time.monotonic()
                answer = client.post(f"{server.url}/v2/models/slow/infer", json=body)
                outcomes.append((sent, time.monotonic(), answer.status_code, answer.text))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    replaced = wait_for(lambda: (r := slow_replica()) is not None and r["pid"] != victim["pid"], timeout=60)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert replaced, "Serve did not start a new replica of slow within 60 s"
    failed = [(status, text) for _, _, status, text in outcomes if status != 200]
    assert failed, "the request being computed when its replica died cannot have succeeded"
    assert {status for status, _ in failed} == {503}, failed[:3]
    assert all("Ray Serve replica" in text and "died" in text for _, text in failed), failed[:3]
    back = [done for sent, done, status, _ in outcomes if status == 200 and sent > killed_at]
    assert back, "no request sent after the kill succeeded"
    print(
        f"kill -9 of the slow replica: {len(failed)} of {len(outcomes)} requests failed (503); the first request "
        f"sent after the kill answered {min(back) - killed_at:.1f} s after it"
    )


def test_unloading_a_model_deletes_its_application_after_its_requests(server: Server) -> None:
    """An unload waits for the request in flight (300 ms at `slow`'s replica), then the application goes;
    the other models stay. Last in the module: `slow` is gone after it."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    body = infer_body("x", np.ones((1, 4), np.float32))
    replicas = httpx.get(f"{server.url}/v1/engine", headers=headers).json()["replicas"]
    serving = {r["replica"] for r in replicas if r["model"] == "slow" and r["age_s"] < 3}
    assert serving
    with server.client() as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/v2/models/slow/infer", json=body)
        time.sleep(0.15)  # it is at the replica now: the hop takes milliseconds, the model 300 ms
        unloaded = client.post("/v2/repository/models/slow/unload")
        assert unloaded.status_code == 200, unloaded.text
        assert running.result().status_code == 200  # the request in flight was answered first
        gone = client.post("/v2/models/slow/infer", json=body)
        assert gone.status_code == 404 and "unknown model 'slow'" in gone.json()["error"]
    status = httpx.get(f"{server.url}/v1/engine", headers=headers).json()
    assert "slow.v1" not in status["applications"] and "tiny.v1" in status["applications"]
    assert not serving & {r["replica"] for r in status["replicas"]}  # its replica left the board when it stopped
