"""Rate limits per key on a real server: requests (REST, the OIP fast path, session messages), LLM tokens,
camera frames, sessions; set with `xrserve keys create|update` and seen by the running server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Server, audit_records, cli, infer_body, start_server, write_sleepy_model
from tests.session_client import SessionClient
from tests.vision import media

LLM = "smollm2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("limits")
    repo = tmp / "repo"
    write_sleepy_model(repo)
    srv = start_server(tmp, "--only", "echo", "--only", LLM, "--only", "hands", repo=repo, admin_key=True)
    yield srv
    srv.stop()


def new_key(server: Server, *limits: str, scope: str = "*") -> str:
    return cli("keys", "create", "-s", scope, "-q", *limits, data_dir=server.data_dir).stdout.strip()


def key_id(token: str) -> str:
    return token.split("_")[1]


def infer(client: httpx.Client) -> httpx.Response:
    return client.post("/v2/models/echo/infer", json=infer_body("x", [[1.0, 2.0, 3.0, 4.0]]))


def test_a_burst_of_rpm_passes_then_429_with_retry_after_and_openais_headers(server: Server) -> None:
    token = new_key(server, "--rpm", "5")
    with server.client(token) as client:
        passed = [client.get("/v1/models") for _ in range(5)]
        refused = client.get("/v1/models")
    assert [r.status_code for r in passed] == [200] * 5
    assert passed[0].headers["x-ratelimit-limit-requests"] == "5"
    assert [r.headers["x-ratelimit-remaining-requests"] for r in passed] == ["4", "3", "2", "1", "0"]
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 12  # one request comes back every 12 s
    assert refused.headers["x-ratelimit-limit-requests"] == "5"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")  # "59s", "1m0s": OpenAI's format
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and "5 requests per minute" in error["message"]
    assert f"keys update {key_id(token)} --rpm" in error["message"]  # what to do about it
    with pytest.raises(openai.RateLimitError, match="requests per minute"):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0).models.list()
    # a raised limit reaches the running server within the key cache's second
    cli("keys", "update", key_id(token), "--rpm", "60", data_dir=server.data_dir)
    give_up = time.monotonic() + 10
    with server.client(token) as client:
        while (answer := client.get("/v1/models")).status_code == 429 and time.monotonic() < give_up:
            time.sleep(0.2)
    assert answer.status_code == 200 and answer.headers["x-ratelimit-limit-requests"] == "60"
    records = audit_records(server.data_dir, lambda rs: any(r["status"] == 429 for r in rs))
    assert any(r["status"] == 429 and "rate limited" in (r["note"] or "") for r in records)


def test_the_bucket_refills_at_rpm_over_60_per_second(server: Server) -> None:
    token = new_key(server, "--rpm", "60")
    with server.client(token) as client:
        started = time.monotonic()
        passed = 0
        while (answer := client.get("/v1/models")).status_code == 200:
            passed += 1
            assert passed <= 60 + (time.monotonic() - started) + 1, "the bucket holds 60 and refills 1 per second"
        assert answer.status_code == 429 and passed >= 60
        time.sleep(int(answer.headers["retry-after-ms"]) / 1000)
        assert client.get("/v1/models").status_code == 200  # one token back after a second


def test_oip_infer_over_the_fast_path_is_limited(server: Server) -> None:
    token = new_key(server, "--rpm", "3", scope="echo")
    with server.client(token) as client:
        passed = [infer(client) for _ in range(3)]
        refused = infer(client)
    assert [r.status_code for r in passed] == [200] * 3, passed[0].text
    assert passed[0].json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]
    assert passed[-1].headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "3 requests per minute" in refused.json()["error"]  # OIP's error shape
    assert refused.headers["x-ratelimit-limit-requests"] == "3"


def test_a_small_token_budget_is_used_up_by_one_completion(server: Server) -> None:
    token = new_key(server, "--tpm", "20", scope=LLM)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Say hello."}]
    raw = client.chat.completions.with_raw_response.create(model=LLM, messages=messages, max_tokens=8)
    assert raw.headers["x-ratelimit-limit-tokens"] == "20"
    assert raw.parse().usage.total_tokens > 20  # the prompt alone is more than the budget
    with pytest.raises(openai.RateLimitError, match="20 LLM tokens per minute") as refused:
        client.chat.completions.create(model=LLM, messages=messages, max_tokens=8)
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_frames_over_fps_are_skipped_as_rate_limited(server: Server) -> None:
    token = new_key(server, "--fps", "2", scope="hands")
    photo = media.hand_photos()[0].read_bytes()
    with SessionClient(server.url, token) as session:
        channel = session.open("cam", "camera", models=["hands"], budget_ms=5000, max_hands=1)["channel"]
        for sequence in range(10):  # back to back: a burst of 2 passes, the rest are over 2 per second
            session.send_binary(channel, sequence, photo)
        reasons: dict[int, str] = {}
        while len(reasons) < 10:
            message = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("result", "skipped", "error"))
            assert message["type"] != "error", message
            reasons[message["sequence"]] = message.get("reason", "answered")
    limited = [s for s, why in reasons.items() if why == "rate_limited"]
    assert len(limited) >= 6, reasons
    assert reasons[0] != "rate_limited"  # the first frame is within the burst


def test_session_messages_count_as_requests_and_sessions_are_capped(server: Server) -> None:
    token = new_key(server, "--rpm", "3", "--max-sessions", "1")
    with SessionClient(server.url, token) as first:
        for n in range(3):
            first.send({"type": "ping", "t": n})
            assert first.wait_type("pong")["t"] == n
        first.send({"type": "ping", "t": 3})
        refused = first.wait_type("error")
        assert refused["status"] == 429 and "requests per minute" in refused["message"]
        assert refused["retry_after_s"] > 0
        second = SessionClient(server.url, token)  # the key's one session is open
        try:
            assert second.hello["type"] == "error" and second.hello["status"] == 429
            assert "already has 1 session(s) open" in second.hello["message"]
            with pytest.raises(ConnectionClosed) as closed:
                second.next(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        finally:
            second.close()
    give_up = time.monotonic() + 10  # the first is closed: a new one may open
    while True:
        with SessionClient(server.url, token) as third:
            if third.hello["type"] == "hello" or time.monotonic() > give_up:
                break
        time.sleep(0.1)
    assert third.hello["type"] == "hello"


def test_limits_are_set_shown_and_never_negative(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = cli("keys", "create", "-s", "*", "-q", "--rpm", "60", "--fps", "15", data_dir=data).stdout.strip()
    cli("keys", "update", key_id(token), "--tpm", "1000", "--fps", "0", "--max-sessions", "2", data_dir=data)
    listing = cli("keys", "list", data_dir=data).stdout
    column = "".join(line.split("│")[-2] for line in listing.splitlines() if line.count("│") > 2)
    assert column.replace(" ", "") == "rpm60,tpm1000,max-sessions2"  # the table may fold the cell over lines
    refused = cli("keys", "update", key_id(token), "--rpm", "-1", data_dir=data, check=False)
    assert refused.returncode == 2 and "--rpm -1: a limit must be 0 or more" in refused.stderr
    refused = cli("keys", "create", "-s", "*", "--tpd", "-5", data_dir=data, check=False)
    assert refused.returncode == 2 and "--tpd -5" in refused.stderr
    missing = cli("keys", "update", "nope", "--rpm", "1", data_dir=data, check=False)
    assert missing.returncode == 2 and "no key with id 'nope'" in missing.stderr
