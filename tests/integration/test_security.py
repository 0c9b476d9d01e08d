"""API keys, scopes, --dev, and the audit trail."""

from __future__ import annotations

import time

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import MODELS, SLEEPY_IO, Server, audit_records, cli, infer_body, start_server, write_model
from tests.session_client import SessionClient

TEXT = infer_body("text", np.array(["hello"]), "BYTES")


def test_no_key_is_401(server: Server) -> None:
    answer = httpx.post(f"{server.url}/v2/models/minilm/infer", json=TEXT)
    assert answer.status_code == 401 and "API key" in answer.json()["error"]
    wrong = httpx.post(
        f"{server.url}/v2/models/minilm/infer", json=TEXT, headers={"Authorization": "Bearer xrs_00000000_forged"}
    )
    assert wrong.status_code == 401 and "not known" in wrong.json()["error"]
    garbled = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Basic abc"})
    assert garbled.status_code == 401


def test_scope_limits_models_and_admin(server: Server) -> None:
    key = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    with server.client(key) as client:
        assert client.post("/v2/models/minilm/infer", json=TEXT).status_code == 200
        denied = client.post("/v2/models/tiny/infer", json=infer_body("x", np.zeros((1, 64))))
        assert denied.status_code == 403 and "lacks the scope 'tiny'" in denied.json()["error"]
        assert client.post("/v2/repository/index").status_code == 403


def test_expired_and_revoked_keys(server: Server) -> None:
    short = cli("keys", "create", "-s", "*", "--expires-in", "1s", "-q", data_dir=server.data_dir).stdout.strip()
    time.sleep(1.2)
    expired = httpx.post(
        f"{server.url}/v2/models/minilm/infer", json=TEXT, headers={"Authorization": f"Bearer {short}"}
    )
    assert expired.status_code == 401 and "expired" in expired.json()["error"]

    token = cli("keys", "create", "-s", "*", "-q", data_dir=server.data_dir).stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server.url}/v2/models/minilm/infer", json=TEXT, headers=auth).status_code == 200
    cli("keys", "revoke", token.split("_")[1], data_dir=server.data_dir)
    listing = cli("keys", "list", data_dir=server.data_dir).stdout
    assert "revoked" in listing and token.split("_")[2] not in listing  # secrets never shown again
    time.sleep(1.1)  # the server caches key lookups for up to a second
    revoked = httpx.post(f"{server.url}/v2/models/minilm/infer", json=TEXT, headers=auth)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]


def test_every_request_is_audited_without_payloads(server: Server, admin) -> None:
    marker = "payload-that-must-not-be-logged"
    answer = admin.post("/v2/models/minilm/infer", json=infer_body("text", np.array([marker]), "BYTES"))
    assert answer.status_code == 200
    assert httpx.get(f"{server.url}/v2/models/tiny").status_code == 401
    key_id = server.admin_key.split("_")[1]

    def served(records: list[dict]) -> list[dict]:
        return [
            r
            for r in records
            if r["route"] == "/v2/models/{model_name}/infer"
            and r["model"] == "minilm"
            and r["key_id"] == key_id
            and r["status"] == 200
        ]

    def refused(records: list[dict]) -> bool:
        return any(r["route"] == "/v2/models/{model_name}" and r["status"] == 401 for r in records)

    records = audit_records(server.data_dir, lambda records: bool(served(records)) and refused(records))
    ok = served(records)
    assert ok and ok[-1]["version"] == "1" and ok[-1]["latency_ms"] > 0
    assert refused(records)
    assert marker not in (server.data_dir / "audit.db").read_bytes().decode("latin-1")
    human = cli("audit", "tail", "-n", "5", data_dir=server.data_dir).stdout
    assert "/v2/" in human


def test_dev_mode_is_anonymous_only_on_loopback(tmp_path) -> None:
    refused = cli("serve", "--dev", "--host", "0.0.0.0", "--port", "1", check=False)
    assert refused.returncode == 2 and "loopback" in refused.stderr
    repo = tmp_path / "repo"
    write_model(
        repo,
        "quick",
        "1",
        """
        runtime = "python"
        entrypoint = "sleepy.py:Sleepy"
        isolation = "thread"
        max_batch_size = 4
        parameters = { sleep_ms = 1 }
    """
        + SLEEPY_IO,
        {"sleepy.py": MODELS / "sleepy.py"},
    )
    body = infer_body("x", np.zeros((1, 4), np.float32))
    dev = start_server(tmp_path, "--dev", "--no-builtins", repo=repo)
    try:
        assert httpx.post(f"{dev.url}/v2/models/quick/infer", json=body).status_code == 200
        # a placeholder token (vLLM's and Ollama's docs say api_key="EMPTY") is no key at all
        placeholder = openai.OpenAI(base_url=f"{dev.url}/v1", api_key="EMPTY", max_retries=0)
        assert [m.id for m in placeholder.models.list().data] == ["quick"]
        assert (
            httpx.post(
                f"{dev.url}/v2/models/quick/infer", json=body, headers={"Authorization": "Bearer sk-no-key-required"}
            ).status_code
            == 200
        )
        with SessionClient(dev.url, "EMPTY", via_query=True) as session:
            assert session.hello["type"] == "hello"
        # a token shaped like an xrserve key is always checked
        forged = openai.OpenAI(base_url=f"{dev.url}/v1", api_key="xrs_bogus_0000", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused_key:
            forged.models.list()
        assert refused_key.value.status_code == 401 and "not known" in refused_key.value.message
        malformed = httpx.post(f"{dev.url}/v2/models/quick/infer", json=body, headers={"Authorization": "Bearer xrs_x"})
        assert malformed.status_code == 401 and "malformed" in malformed.json()["error"]
        with SessionClient(dev.url, "xrs_bogus_0000") as session:
            assert session.hello["type"] == "error" and session.hello["status"] == 401
    finally:
        dev.stop()


def test_placeholder_key_is_refused_without_dev(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="EMPTY", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.status_code == 401 and "malformed" in refused.value.message
    answer = httpx.post(f"{server.url}/v2/models/minilm/infer", json=TEXT, headers={"Authorization": "Bearer EMPTY"})
    assert answer.status_code == 401 and "xrs_" in answer.json()["error"]


@pytest.mark.parametrize("route", ["/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json"])
def test_probes_and_docs_need_no_key(server: Server, route: str) -> None:
    assert httpx.get(f"{server.url}{route}").status_code == 200
