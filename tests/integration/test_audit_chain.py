"""The audit trail is tamper-evident, durable and private; a trail that cannot be written refuses requests.

`xrserve audit verify` recomputes the hash chains and anchors: it passes on a real trail
and names an edited, a deleted and a cut-off record. A `kill -9` right after the answers
loses none of their records. A file-size limit (a full disk) makes the server answer 503
saying why, alive, and serve again once the limit is lifted. The data directory is 0700,
its files 0600, and the server's log holds no key, digest or payload.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.llm_support import procs
from tests.conftest import MODELS, Server, cli, start_server, write_model, write_sleepy_model

MARKER = "payload-marker-7f3c2a-must-never-be-logged"


def small_repo(tmp: Path) -> Path:
    """One sub-millisecond model computed on the event loop: a real model, no start-up wait."""
    repo = tmp / "repo"
    write_sleepy_model(repo)
    return repo


def infer(client: httpx.Client, **extra) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], **extra}
    return client.post("/v2/models/echo/infer", json=body)


def chain_rows(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "audit.db") as db:
        return db.execute("SELECT chain, seq, time, status FROM audit ORDER BY rowid").fetchall()


MODES_WHILE_RUNNING: dict[str, str] = {}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A server that answered a mix of requests (a payload with MARKER among them), checked while running, stopped."""
    tmp = tmp_path_factory.mktemp("chain")
    server = start_server(tmp, "--no-builtins", repo=small_repo(tmp), admin_key=True)
    key_id = server.admin_key.split("_")[1]
    try:
        with server.client() as client:
            for _ in range(12):
                assert infer(client, id=MARKER).status_code == 200
                assert client.get("/v1/models").status_code == 200
            wrong = client.post(
                "/v1/chat/completions",
                json={"model": "nothing", "messages": [{"role": "user", "content": MARKER}]},
            )
            assert wrong.status_code == 404
            bad = client.post("/v2/models/echo/infer", json={"inputs": [{"name": MARKER, "data": [MARKER]}]})
            assert bad.status_code == 400
        stranger = f"xrs_{key_id}_{'A' * 32}"
        assert infer(server.client(stranger)).status_code == 401
        MODES_WHILE_RUNNING.update(modes(server.data_dir))
    finally:
        server.stop()
    return server


def modes(root: Path) -> dict[str, str]:
    """Every directory and file under root (root as '.') that is not 0700 / 0600, with its mode; and a count."""
    found = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        found[str(path.relative_to(root))] = ("dir " if path.is_dir() else "file ") + oct(mode)
    return found


def tampered(server: Server, tmp: Path, change: str) -> subprocess.CompletedProcess:
    """A copy of the stopped server's trail with one SQL change made, verified."""
    data_dir = tmp / "copy"
    data_dir.mkdir()
    shutil.copy(server.data_dir / "audit.db", data_dir / "audit.db")
    with sqlite3.connect(data_dir / "audit.db") as db:
        assert db.execute(change).rowcount > 0
    return cli("audit", "verify", data_dir=data_dir, check=False)


def test_verify_passes_on_a_real_trail(stopped: Server) -> None:
    result = cli("audit", "verify", data_dir=stopped.data_dir, check=False)
    assert result.returncode == 0, result.stderr
    rows = chain_rows(stopped.data_dir)
    assert len({chain for chain, *_ in rows}) == 1 and [seq for _, seq, *_ in rows] == list(range(1, len(rows) + 1))
    assert f"OK: {len(rows)} records in 1 chains" in result.stdout
    with sqlite3.connect(stopped.data_dir / "audit.db") as db:
        first_link = db.execute("SELECT link FROM audit WHERE seq = 1").fetchone()[0]
        last_anchor = db.execute("SELECT seq FROM audit_anchor ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    assert first_link == "start"  # the chain's first record says so
    assert last_anchor == len(rows)  # anchored when the server stopped


def test_verify_names_an_edited_record(stopped: Server, tmp_path: Path) -> None:
    chain, seq, when, status = chain_rows(stopped.data_dir)[9]
    result = tampered(stopped, tmp_path, f"UPDATE audit SET status = 204 WHERE seq = 10 AND status = {status}")
    assert result.returncode == 1
    assert f"record #10 of chain {chain}" in result.stderr and "altered" in result.stderr
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when)) in result.stderr


def test_verify_names_a_record_deleted_in_the_middle(stopped: Server, tmp_path: Path) -> None:
    chain = chain_rows(stopped.data_dir)[0][0]
    result = tampered(stopped, tmp_path, "DELETE FROM audit WHERE seq = 15")
    assert result.returncode == 1
    assert f"record #15 of chain {chain} is missing" in result.stderr, result.stderr


def test_verify_detects_records_cut_off_at_the_end(stopped: Server, tmp_path: Path) -> None:
    rows = chain_rows(stopped.data_dir)
    chain, last = rows[-1][0], len(rows)
    # the first anchor past the cut names where the chain reached: the one at the stop (#last), or one the
    # once-a-second anchoring wrote in between when the requests came slowly (a loaded machine)
    with sqlite3.connect(stopped.data_dir / "audit.db") as db:
        reached = db.execute("SELECT min(seq) FROM audit_anchor WHERE seq > ?", (last - 3,)).fetchone()[0]
    result = tampered(stopped, tmp_path, f"DELETE FROM audit WHERE seq > {last - 3}")
    assert result.returncode == 1
    assert f"records #{last - 2} to #{reached} of chain {chain} are missing: cut off at the end" in result.stderr


def test_the_data_directory_is_private(stopped: Server) -> None:
    assert {"keys.db", "audit.db", "audit.db-wal", "worlds/jobs"} <= set(MODES_WHILE_RUNNING)
    for state in (MODES_WHILE_RUNNING, modes(stopped.data_dir)):
        wrong = {name: mode for name, mode in state.items() if mode not in ("dir 0o700", "file 0o600")}
        assert not wrong, f"not private to the server's user: {wrong}"


def test_no_secret_or_payload_reaches_the_log(stopped: Server) -> None:
    log = stopped.log.read_text(errors="replace")
    assert "xrserve" in log  # the log is the server's, and was written
    secret = stopped.admin_key.split("_", 2)[2]
    with sqlite3.connect(stopped.data_dir / "keys.db") as db:
        digests = [d for row in db.execute("SELECT secret_sha256, previous_sha256 FROM api_keys") for d in row if d]
    assert hashlib.sha256(secret.encode()).hexdigest() in digests  # what is searched for is what is stored
    for needle in [stopped.admin_key, secret, "A" * 32, MARKER, *digests]:
        assert needle not in log, f"the server's log holds {needle[:12]}..."
    trail = (stopped.data_dir / "audit.db").read_bytes().decode("latin-1")
    assert MARKER not in trail and secret not in trail


def test_kill_9_right_after_the_answers_loses_no_record(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--no-builtins", repo=small_repo(tmp_path), admin_key=True)
    try:
        with server.client() as client:
            answers = [infer(client, id=f"r{i}") for i in range(40)]
        os.killpg(server.process.pid, signal.SIGKILL)  # at once: no flush, no close, no checkpoint
        server.process.wait(timeout=10)
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 40
    rows = chain_rows(server.data_dir)
    with sqlite3.connect(server.data_dir / "audit.db") as db:
        served = db.execute("SELECT count(*) FROM audit WHERE route = '/v2/models/{model_name}/infer'").fetchone()[0]
    assert served == 40, f"{40 - served} answered requests have no record after kill -9"
    result = cli("audit", "verify", data_dir=server.data_dir, check=False)
    assert result.returncode == 0 and f"OK: {len(rows)} records" in result.stdout, result.stderr


def test_records_cut_off_after_a_quiet_second_are_detected_without_a_clean_stop(tmp_path: Path) -> None:
    """The head is anchored a second after the last request even if none follows and the server dies."""
    server = start_server(tmp_path, "--no-builtins", repo=small_repo(tmp_path), admin_key=True)
    try:
        with server.client() as client:
            for i in range(5):
                assert infer(client, id=f"r{i}").status_code == 200
        time.sleep(2.5)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        server.stop()
    assert cli("audit", "verify", data_dir=server.data_dir, check=False).returncode == 0
    rows = chain_rows(server.data_dir)
    with sqlite3.connect(server.data_dir / "audit.db") as db:
        db.execute("DELETE FROM audit WHERE seq > ?", (len(rows) - 2,))
    result = cli("audit", "verify", data_dir=server.data_dir, check=False)
    assert result.returncode == 1 and "cut off at the end" in result.stderr, result.stderr


FILE_LIMIT = 256 * 1024


def limit_file_size() -> None:
    """In the server's process, before it starts: files may not grow past FILE_LIMIT (the soft limit, liftable)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.RLIM_INFINITY))


def test_a_trail_that_cannot_be_written_refuses_requests_and_recovers(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--data-dir", str(data_dir), "--no-builtins", "--dev", "--model-repository", str(small_repo(tmp_path))]
    process, url = procs.start_xrserve(args, log, timeout=120, preexec=limit_file_size)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(3000):  # each record adds a WAL frame; the WAL soon passes the limit
                answer = infer(client)
                if answer.status_code != 200:
                    break
            assert answer.status_code == 503, answer.text
            message = answer.json()["error"]
            assert message.startswith("the audit trail cannot be written: ")
            assert "requests are refused rather than served without one" in message
            assert answer.headers["retry-after"]
            # every later request is refused too, OpenAI's shape on /v1, and the server stays alive
            again = client.get("/v1/models")
            assert again.status_code == 503 and "audit trail" in again.json()["error"]["message"]
            assert_session_refused(url)
            assert process.poll() is None
            assert "cannot be written" in log.read_text()
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            give_up = time.monotonic() + 10
            while (answer := infer(client)).status_code != 200 and time.monotonic() < give_up:
                time.sleep(0.05)
            assert answer.status_code == 200, answer.text
    finally:
        procs.end(process)
    # what was refused while the trail failed never reached it; what was written is intact
    result = cli("audit", "verify", data_dir=data_dir, check=False)
    assert result.returncode == 0, result.stderr


def assert_session_refused(url: str) -> None:
    """A WebSocket session is refused too: a 503 handshake with the JSON error (or, where the
    server cannot answer a handshake with a body, a close with 1013 "try again later")."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url.replace("http", "ws", 1) + "/v1/session", open_timeout=10) as socket:
            socket.recv(timeout=10)
    except InvalidStatus as refused:
        assert refused.response.status_code == 503, refused
        assert "audit trail cannot be written" in json.loads(refused.response.body)["error"]["message"]
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1013, closed
    else:
        raise AssertionError("a session opened while the audit trail could not be written")


def test_an_older_trail_gains_the_chain_columns(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "audit.db") as db:
        db.execute(
            "CREATE TABLE audit (time REAL NOT NULL, key_id TEXT, method TEXT NOT NULL, route TEXT NOT NULL, "
            "model TEXT, version TEXT, status INTEGER NOT NULL, latency_ms REAL NOT NULL, client TEXT, note TEXT)"
        )
        db.execute("INSERT INTO audit VALUES (1.5, 'old', 'GET', '/v1/models', NULL, NULL, 200, 1.0, NULL, NULL)")
    assert "1 older records" in cli("audit", "verify", data_dir=data_dir).stdout
    server = start_server(tmp_path, "--no-builtins", "--dev", repo=small_repo(tmp_path))
    try:
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
    finally:
        server.stop()
    tail = cli("audit", "tail", "--json", data_dir=data_dir).stdout
    assert '"key_id": "old"' in tail and '"route": "/v1/models"' in tail
    result = cli("audit", "verify", data_dir=data_dir)
    assert re.search(r"OK: \d+ records in 1 chains .*; 1 older records", result.stdout), result.stdout


def test_a_stream_its_client_leaves_is_recorded_when_it_starts_and_when_it_ends(tmp_path: Path) -> None:
    """The record is written before the first byte (200); leaving mid-stream adds one with the 499."""
    repo = tmp_path / "repo"
    write_model(
        repo,
        "streamer",
        "1",
        """
        runtime = "python"
        entrypoint = "streamer.py:Streamer"
        isolation = "thread"
        streaming = true
        max_streams = 2
        parameters = { tick_ms = 20 }
        inputs = [{ name = "text_input", datatype = "BYTES", shape = [1] }]
        outputs = [{ name = "text_output", datatype = "BYTES", shape = [1] }]
    """,
        {"streamer.py": MODELS / "streamer.py"},
    )
    server = start_server(tmp_path, "--no-builtins", "--dev", repo=repo)
    try:
        body = {"model": "streamer", "prompt": "500", "stream": True}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            with client.stream("POST", "/v1/completions", json=body) as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()
                assert next(lines).startswith("data:")
                with sqlite3.connect(server.data_dir / "audit.db") as db:
                    newest = db.execute("SELECT route, status FROM audit ORDER BY rowid DESC LIMIT 1").fetchone()
                assert newest == ("/v1/completions", 200)  # written before the answer's first byte left
            give_up = time.monotonic() + 10
            while time.monotonic() < give_up and chain_rows(server.data_dir)[-1][3] != 499:
                time.sleep(0.1)
    finally:
        server.stop()
    with sqlite3.connect(server.data_dir / "audit.db") as db:
        query = "SELECT status, note FROM audit WHERE route = '/v1/completions' ORDER BY rowid"
        statuses = db.execute(query).fetchall()
    assert [status for status, _ in statuses] == [200, 499], statuses
    assert cli("audit", "verify", data_dir=server.data_dir, check=False).returncode == 0
