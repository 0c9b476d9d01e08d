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

    def __init__(self, server: Server, count: int) -> None:
        self.server, self.stop = server, threading.Event()
        self.outcomes: list[tuple[float, int | str, str]] = []  # (time, status or exception, version)
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10, headers=self._auth()) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/v2/models/tiny/infer", json=BODY)
                    version = response.json().get("model_version", "") if response.status_code == 200 else ""
                    self.outcomes.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError as error:  # a timeout: a request left unanswered
                    self.outcomes.append((time.monotonic(), type(error).__name__, ""))

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin_key}"}

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
    with Clients(small_server, 16) as clients, small_server.client() as admin:
        time.sleep(1.0)
        export_tiny_onnx(write_model(small_server.repo, "tiny", "2", toml) / "model.onnx", seed=5)
        assert admin.post("/v2/repository/models/tiny/load").status_code == 200
        assert admin.post("/v2/repository/models/tiny/promote", json={"version": "2"}).status_code == 200
        unloaded = cli("models", "unload", "tiny", "1", "--url", small_server.url, "--key", small_server.admin_key)
        assert "tiny version 1: UNLOADED" in unloaded.stdout
        swapped = time.monotonic()
        time.sleep(1.5)
    statuses = Counter(status for _, status, _ in clients.outcomes)
    assert statuses == {200: len(clients.outcomes)}, statuses  # zero failed requests
    after = {version for at, _, version in clients.outcomes if at > swapped + 0.1}
    assert after == {"2"} and len(clients.outcomes) > 100
    with small_server.client() as admin:
        pinned = admin.post("/v2/models/tiny/versions/1/infer", json=BODY)
        assert pinned.status_code == 404 and "its versions are ['2']" in pinned.json()["error"]
        missing = admin.post("/v2/repository/models/tiny/versions/7/unload")
        assert missing.status_code == 404
