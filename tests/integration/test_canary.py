"""Canary releases on a real server: an exact share of the requests without a version goes to the
canary, sessions stay on one version, a failing canary is rolled back by itself (audited, in the
metrics), and promoting the canary ends it."""

from __future__ import annotations

from collections import Counter

import httpx
import numpy as np
import pytest

from tests.conftest import (
    MODELS,
    Server,
    audit_records,
    cli,
    export_tiny_onnx,
    infer_body,
    start_server,
    write_model,
    write_sleepy_model,
)
from tests.session_client import SessionClient

TINY = """
runtime = "onnx"
isolation = "thread"
max_batch_size = 16
inputs = [{ name = "x", datatype = "FP32", shape = [-1, 64] }]
outputs = [{ name = "y", datatype = "FP32", shape = [-1, 16] }]
"""
#: the canary of tiny is judged on errors only: a shared test machine's latency jitters
TINY_CANARY = TINY + "\n[canary]\nmin_p99_ms = 10000\n"
FLAKY = """
runtime = "python"
entrypoint = "{file}"
isolation = "thread"
inputs = [{{ name = "x", datatype = "FP32", shape = [-1] }}]
outputs = [{{ name = "y", datatype = "FP32", shape = [-1] }}]
"""
BROKEN_PY = """
from xrserve import Model


class Broken(Model):
    def infer(self, inputs, parameters):
        raise RuntimeError("the new weights are corrupt")
"""
TINY_BODY = infer_body("x", np.ones((1, 64), np.float32))
SLOW_BODY = infer_body("x", np.ones((1, 4), np.float32))
FLAKY_BODY = infer_body("x", np.ones(2, np.float32))


@pytest.fixture(scope="module")
def canary_server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("canary")
    repo = tmp / "repo"
    export_tiny_onnx(write_model(repo, "tiny", "1", TINY) / "model.onnx", seed=0)
    export_tiny_onnx(write_model(repo, "tiny", "2", TINY_CANARY) / "model.onnx", seed=5)
    write_model(repo, "flaky", "1", FLAKY.format(file="failing.py:Failing"), {"failing.py": MODELS / "failing.py"})
    broken = write_model(
        repo, "flaky", "2", FLAKY.format(file="broken.py:Broken") + "\n[canary]\nwindow_s = 10\nmin_requests = 10\n"
    )
    (broken / "broken.py").write_text(BROKEN_PY)
    # the same answers, but the new version takes 250 ms where the stable one takes 5
    write_sleepy_model(repo, "slow", "1", sleep_ms=5, isolation="thread")
    slow_canary = "\n[canary]\nwindow_s = 20\nmin_requests = 8\nmin_p99_ms = 150\nmax_p99_ratio = 3\n"
    write_sleepy_model(repo, "slow", "2", sleep_ms=250, isolation="thread", extra=slow_canary)
    server = start_server(tmp, "--no-builtins", repo=repo, admin_key=True)
    yield server
    server.stop()


def canary_cli(server: Server, *args: str, check: bool = True):
    return cli("models", "canary", *args, "--url", server.url, "--key", server.admin_key, check=check)


def versions_of(client: httpx.Client, path: str, body: dict, count: int) -> Counter:
    seen: Counter = Counter()
    for _ in range(count):
        response = client.post(path, json=body)
        seen[response.json()["model_version"] if response.status_code == 200 else response.status_code] += 1
    return seen


def test_a_canary_gets_its_share_of_requests_without_a_version(canary_server: Server) -> None:
    shown = canary_cli(canary_server, "tiny", "2", "--percent", "20").stdout
    assert "canary version 2 takes 20%" in shown and "stable: version 1" in shown, shown
    with canary_server.client() as client:
        split = versions_of(client, "/v2/models/tiny/infer", TINY_BODY, 1000)
        assert set(split) == {"1", "2"} and 170 <= split["2"] <= 230, split
        # a version asked for is what answers, canary or not
        assert versions_of(client, "/v2/models/tiny/versions/1/infer", TINY_BODY, 50) == {"1": 50}
        assert versions_of(client, "/v2/models/tiny/versions/2/infer", TINY_BODY, 50) == {"2": 50}
        # an OIP client's own session stays on one version
        for session in ("alpha", "beta", "gamma"):
            body = {**TINY_BODY, "parameters": {"session": session}}
            assert len(versions_of(client, "/v2/models/tiny/infer", body, 20)) == 1
        bad = client.post("/v2/models/tiny/infer", json={**TINY_BODY, "parameters": {"session": 7}})
        assert bad.status_code == 400 and "parameters.session" in bad.json()["error"]
        state = client.get("/v2/repository/models/tiny/canary").json()
    assert state["active"] and state["version"] == "2" and state["percent"] == 20
    assert state["default_version"] == "1" and state["canary_requests"] >= 170
    assert canary_server.metric("xrserve_canary_percent", model="tiny", version="2") == 20
    assert canary_server.metric("xrserve_canary_percent", model="tiny", version="1") == 80
    assert canary_server.metric("xrserve_request_seconds_count", model="tiny", version="2") >= 220
    assert "takes 20%" in canary_cli(canary_server, "tiny").stdout


def test_a_session_stays_on_one_version(canary_server: Server) -> None:
    canary_cli(canary_server, "tiny", "2", "--percent", "50")
    message = {"type": "infer", "stream": "t", "inputs": TINY_BODY["inputs"]}
    for _ in range(6):
        with SessionClient(canary_server.url, canary_server.admin_key) as session:
            opened = session.open("t", "infer", model="tiny")
            for i in range(20):
                session.send({**message, "id": str(i)})
            versions = {session.wait_type("result")["version"] for _ in range(20)}
            assert versions == {opened["version"]}, (opened, versions)


def test_refusals_say_what_to_do(canary_server: Server) -> None:
    with canary_server.client() as client:
        missing = client.post("/v2/repository/models/tiny/canary", json={"version": "9", "percent": 20})
        assert missing.status_code == 404 and "its versions are ['1', '2']" in missing.json()["error"]
        for percent in (0, 100):
            bad = client.post("/v2/repository/models/tiny/canary", json={"version": "2", "percent": percent})
            assert bad.status_code == 400 and "percent" in bad.json()["error"]
        stable = client.post("/v2/repository/models/tiny/canary", json={"version": "1", "percent": 20})
        assert stable.status_code == 409 and "already the default" in stable.json()["error"]
        unknown = client.post("/v2/repository/models/nope/canary", json={"version": "1", "percent": 20})
        assert unknown.status_code == 404
        none = client.delete("/v2/repository/models/flaky/canary")
        assert none.status_code == 409 and "no canary running" in none.json()["error"]
    assert "--percent" in canary_cli(canary_server, "tiny", "2", check=False).stderr


def through_a_canary(server: Server, model: str, body: dict, count: int) -> tuple[list[tuple[int, str]], dict]:
    """Version 2 of `model` as a 50% canary, then `count` requests in a row: (status, version) of each,
    and the canary's state after them."""
    canary_cli(server, model, "2", "--percent", "50")
    with server.client() as client:
        outcomes = [
            (r.status_code, r.json().get("model_version"))
            for r in (client.post(f"/v2/models/{model}/infer", json=body) for _ in range(count))
        ]
        state = client.get(f"/v2/repository/models/{model}/canary").json()
    return outcomes, state


def rollback_record(server: Server, model: str) -> dict:
    """The audit record of the automatic rollback of `model`'s canary."""

    def is_rollback(record: dict) -> bool:
        return record.get("model") == model and record["route"] == "canary rollback"

    records = audit_records(server.data_dir, lambda rs: any(is_rollback(r) for r in rs))
    return next(r for r in records if is_rollback(r))


def test_a_failing_canary_is_rolled_back_by_itself(canary_server: Server) -> None:
    outcomes, state = through_a_canary(canary_server, "flaky", FLAKY_BODY, 60)
    failed = [i for i, (status, _) in enumerate(outcomes) if status != 200]
    assert len(failed) == 10 and failed[-1] < 25, outcomes  # ten failures on the canary, then none
    assert all(outcome == (200, "1") for outcome in outcomes[25:]), outcomes
    assert not state["active"] and state["default_version"] == "1"
    assert canary_server.metric("xrserve_canary_rollbacks_total", model="flaky", version="2") == 1
    assert canary_server.metric("xrserve_canary_percent", model="flaky", version="2") == 0
    assert canary_server.metric("xrserve_inference_failures_total", model="flaky", version="2") == 10
    rollback = rollback_record(canary_server, "flaky")
    assert rollback["model"] == "flaky" and rollback["version"] == "2"
    assert rollback["note"].startswith("error rate 1.00 vs 0.00 over 10 requests in 10 s"), rollback


def test_a_slow_canary_is_rolled_back_by_itself(canary_server: Server) -> None:
    outcomes, state = through_a_canary(canary_server, "slow", SLOW_BODY, 50)
    assert all(status == 200 for status, _ in outcomes), outcomes  # slow, not failing: every request answered
    on_canary = [i for i, (_, version) in enumerate(outcomes) if version == "2"]
    # judged once both versions have 8 requests in the window: the canary's p99 (~250 ms) is over
    # 150 ms and over 3x the stable version's (~5 ms); then every request is on the stable version
    assert 8 <= len(on_canary) <= 12 and on_canary[-1] < 30, outcomes
    assert not state["active"] and state["default_version"] == "1"
    assert canary_server.metric("xrserve_canary_rollbacks_total", model="slow", version="2") == 1
    rollback = rollback_record(canary_server, "slow")
    assert rollback["note"].startswith("p99 latency"), rollback


def test_promoting_the_canary_ends_it(canary_server: Server) -> None:
    canary_cli(canary_server, "tiny", "2", "--percent", "20")
    cli("models", "promote", "tiny", "2", "--url", canary_server.url, "--key", canary_server.admin_key)
    assert "no canary; requests without a version get version 2" in canary_cli(canary_server, "tiny").stdout
    with canary_server.client() as client:
        assert versions_of(client, "/v2/models/tiny/infer", TINY_BODY, 50) == {"2": 50}
    assert canary_server.metric("xrserve_canary_percent", model="tiny", version="2") == 0
    # rollback and DELETE end a canary too: every request back on the stable version
    canary_cli(canary_server, "tiny", "1", "--percent", "30")
    with canary_server.client() as client:
        rolled = client.post("/v2/repository/models/tiny/rollback").json()
        assert rolled["default_version"] == "2"
        assert versions_of(client, "/v2/models/tiny/infer", TINY_BODY, 20) == {"2": 20}
    canary_cli(canary_server, "tiny", "1", "--percent", "30")
    assert "no canary" in canary_cli(canary_server, "tiny", "--end").stdout
