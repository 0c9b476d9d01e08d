"""Loading, promoting and unloading versions while clients keep sending: no request may be
left unanswered, and a version swap (load v2, promote, unload v1) fails none."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, build_repository, cli, export_tiny_onnx, infer_body, start_server, write_model

BODY = infer_body("x", np.ones((1, 64), np.float32))


@pytest.fixture
def small_server(tmp_path: Path):
    repo = tmp_path / "repo"
    build_repository(repo)
    server = start_server(tmp_path, "--no-builtins", "--only", "tiny", repo=repo, admin_key=True)
    yield server
    server.stop()


class Clients:
    """N threads looping unversioned OIP infers until stopped; every outcome is kept."""

    def __init__(self, server: Server, count: int, key: str | None = None) -> None:
        self.server, self.stop = server, threading.Event()
        self.key = key or server.admin_key  # the clients read it before every request: set it to switch
        self.outcomes: list[tuple[float, int | str, str]] = []  # (time, status or exception, version)
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/v2/models/tiny/infer", json=BODY, headers=self._auth())
                    version = response.json().get("model_version", "") if response.status_code == 200 else ""
                    self.outcomes.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError as error:  # a timeout: a request left unanswered
                    self.outcomes.append((time.monotonic(), type(error).__name__, ""))

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_unloading_under_load_answers_every_request(small_server: Server) -> None:
    with Clients(small_server, 8) as clients:
        time.sleep(1.5)
        with small_server.client() as admin:
            assert admin.post("/v2/repository/models/tiny/unload").status_code == 200
        time.sleep(1.0)
    statuses = Counter(status for _, status, _ in clients.outcomes)
    assert statuses[200] > 20
    assert set(statuses) <= {200, 404, 503}, statuses  # no timeouts: nothing was left hanging
    with small_server.client() as admin:
        gone = admin.post("/v2/models/tiny/infer", json=BODY)
        assert gone.status_code == 404 and "unknown model 'tiny'" in gone.json()["error"]


def test_a_version_swap_under_load_fails_no_request(small_server: Server) -> None:
    toml = (small_server.repo / "tiny" / "1" / "model.toml").read_text()
    started = time.monotonic()
    with Clients(small_server, 16) as clients, small_server.client() as admin:
        time.sleep(5.0)
        export_tiny_onnx(write_model(small_server.repo, "tiny", "2", toml) / "model.onnx", seed=5)
        assert admin.post("/v2/repository/models/tiny/load").status_code == 200
        assert admin.post("/v2/repository/models/tiny/promote", json={"version": "2"}).status_code == 200
        unloaded = cli("models", "unload", "tiny", "1", "--url", small_server.url, "--key", small_server.admin_key)
        assert "tiny version 1: UNLOADED" in unloaded.stdout
        swapped = time.monotonic()
        time.sleep(max(2.0, 20 - (swapped - started)))  # 20 s of load in all
    statuses = Counter(status for _, status, _ in clients.outcomes)
    assert statuses == {200: len(clients.outcomes)}, statuses  # zero failed requests
    after = {version for at, _, version in clients.outcomes if at > swapped + 0.1}
    assert after == {"2"} and len(clients.outcomes) > 100
    with small_server.client() as admin:
        pinned = admin.post("/v2/models/tiny/versions/1/infer", json=BODY)
        assert pinned.status_code == 404 and "its versions are ['2']" in pinned.json()["error"]
        missing = admin.post("/v2/repository/models/tiny/versions/7/unload")
        assert missing.status_code == 404


def test_a_key_rotation_under_load_fails_no_client_that_switches_in_the_grace(small_server: Server) -> None:
    key = cli("keys", "create", "--scope", "*", "--quiet", data_dir=small_server.data_dir).stdout.strip()
    key_id = key.split("_")[1]
    with Clients(small_server, 8, key=key) as clients:
        time.sleep(2.0)
        rotated = cli("keys", "rotate", key_id, "--grace", "6s", "--quiet", data_dir=small_server.data_dir)
        time.sleep(2.0)  # the clients go on with the old secret for a while: it still works
        clients.key = rotated.stdout.strip()
        switched = time.monotonic()
        time.sleep(6.0)  # past the grace: only the new secret is in use
    statuses = Counter(status for _, status, _ in clients.outcomes)
    assert statuses == {200: len(clients.outcomes)}, statuses
    assert sum(1 for at, _, _ in clients.outcomes if at > switched + 5) > 10
    with httpx.Client(base_url=small_server.url) as client:
        old = client.post("/v2/models/tiny/infer", json=BODY, headers={"Authorization": f"Bearer {key}"})
        assert old.status_code == 401 and "rotated" in old.text
