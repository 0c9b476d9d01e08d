"""GET /v1/audit: the newest audit records for an admin key, newest first."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.conftest import Server, cli, infer_body

FIELDS = {"time", "key_id", "method", "route", "model", "version", "status", "latency_ms", "client", "note"}


def records_until(admin: httpx.Client, found, limit: int = 50) -> list[dict]:
    """The newest records, asked again until `found` holds (a 499 is recorded when noticed) or 15 s pass."""
    give_up = time.monotonic() + 15
    while True:
        answer = admin.get("/v1/audit", params={"limit": limit})
        assert answer.status_code == 200, answer.text
        records = answer.json()["data"]
        if found(records) or time.monotonic() > give_up:
            return records
        time.sleep(0.2)


def test_admin_reads_the_request_it_just_made(server: Server, admin: httpx.Client) -> None:
    started = time.time()
    key_id = server.admin_key.split("_")[1]
    assert admin.post("/v2/models/minilm/infer", json=infer_body("text", np.array(["audited"]), "BYTES")).is_success

    def mine(record: dict) -> bool:
        return (
            record["route"] == "/v2/models/{model_name}/infer"
            and record["key_id"] == key_id
            and record["time"] >= started - 1
        )

    records = records_until(admin, lambda rs: any(mine(r) for r in rs))
    ours = next(r for r in records if mine(r))
    assert set(ours) == FIELDS
    assert (ours["method"], ours["model"], ours["status"]) == ("POST", "minilm", 200)
    assert ours["version"] == "1" and ours["latency_ms"] > 0 and ours["client"] == "127.0.0.1"
    times = [r["time"] for r in records]
    assert times == sorted(times, reverse=True), "newest first"


def test_limit_bounds_the_answer(admin: httpx.Client) -> None:
    for _ in range(4):
        admin.get("/v1/models")
    records = records_until(admin, lambda rs: len(rs) >= 3, limit=3)
    assert len(records) == 3
    assert len(admin.get("/v1/audit").json()["data"]) <= 100  # the default


@pytest.mark.parametrize("limit", ["0", "5000", "-1", "many"])
def test_a_limit_out_of_range_is_a_400(admin: httpx.Client, limit: str) -> None:
    answer = admin.get("/v1/audit", params={"limit": limit})
    assert answer.status_code == 400
    error = answer.json()["error"]  # a /v1 route: OpenAI's error shape
    assert error["type"] == "invalid_request_error" and "limit" in error["message"]


def test_only_an_admin_key_reads_the_audit(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/audit").status_code == 401
    key = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    with server.client(key) as client:
        denied = client.get("/v1/audit")
    assert denied.status_code == 403
    assert "lacks the scope admin" in denied.json()["error"]["message"]
