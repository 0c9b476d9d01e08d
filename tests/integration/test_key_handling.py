"""Key handling: lifetimes, the key checked before the body, lockouts of guessed keys, rotation.

These tests run their own servers: failed key attempts lock a key id and an address, and the
shared server must not be locked for the tests that follow. `XRSERVE_LOCKOUT` makes the
lockout fast here (a 2 s window, locks of 1 s doubling up to 4 s).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.llm_support import procs
from tests.conftest import Server, audit_records, cli
from tests.session_client import SessionClient

#: 3 failures in 2 s lock a key id for 1 s, then 2 s, then 4 s; an address needs 1000 here
FAST = "key=3,address=1000,window=2,first=1,max=4"


def start_guarded(tmp: Path, lockout: str, *args: str) -> Server:
    """A server without models (the routes are all there) whose lockout is `lockout`."""
    data_dir, log = tmp / "data", tmp / "server.log"
    process, url = procs.start_xrserve(
        ["--data-dir", str(data_dir), "--no-builtins", *args], log, env={"XRSERVE_LOCKOUT": lockout}
    )
    return Server(url, data_dir, tmp, process, log)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_guarded(tmp_path_factory.mktemp("guarded"), FAST)
    yield server
    server.stop()


def new_key(server: Server, *args: str) -> str:
    return cli("keys", "create", "--scope", "*", "--quiet", *args, data_dir=server.data_dir).stdout.strip()


def key_id(token: str) -> str:
    return token.split("_")[1]


def models(server: Server, token: str | None, source: str | None = None) -> httpx.Response:
    """GET /v1/models (any valid key may) with `token`, from the loopback address `source` if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(base_url=server.url, headers=headers, timeout=30, transport=transport) as http:
        return http.get("/v1/models")


def message(answer: httpx.Response) -> str:
    error = answer.json()["error"]
    return error["message"] if isinstance(error, dict) else error


# -- lifetimes -------------------------------------------------------------------------------


@pytest.mark.parametrize("lifetime", ["0s", "0", "-1h", "0.0d"])
def test_a_key_that_would_never_expire_by_mistake_is_refused(tmp_path: Path, lifetime: str) -> None:
    made = cli("keys", "create", "-s", "*", f"--expires-in={lifetime}", data_dir=tmp_path, check=False)
    assert made.returncode == 2, made.stdout
    assert "--expires-in" in made.stderr and "more than zero" in made.stderr
    assert "xrs_" not in made.stdout and "active" not in cli("keys", "list", data_dir=tmp_path).stdout


# -- the key before the body -----------------------------------------------------------------


def protected_operations(server: Server) -> list[tuple[str, str, str]]:
    """(method, path with its parameters filled, content type) of every route the document says needs a key."""
    document = httpx.get(f"{server.url}/openapi.json").json()
    found = []
    for template, methods in document["paths"].items():
        path = template
        for name in [part[1:-1] for part in template.split("/") if part.startswith("{")]:
            path = path.replace(f"{{{name}}}", "1")
        for method, operation in methods.items():
            if not operation.get("security"):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            kind = "multipart/form-data; boundary=xyz" if "multipart/form-data" in content else "application/json"
            found.append((method.upper(), path, kind))
    return found


def test_every_protected_route_checks_the_key_before_the_body(guarded: Server) -> None:
    operations = protected_operations(guarded)
    paths = {path for _, path, _ in operations}
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/scenes", "/v2/models/1/infer"} <= paths
    assert any(kind.startswith("multipart") for _, _, kind in operations)  # forms are read first too
    garbage = b"{this is not JSON, nor a form"
    for method, path, kind in operations:
        for token in (None, f"xrs_{secrets.token_hex(4)}_wrong"):  # a new key id each time: no lockout
            headers = {"Content-Type": kind} | ({"Authorization": f"Bearer {token}"} if token else {})
            answer = httpx.request(method, guarded.url + path, content=garbage, headers=headers)
            assert answer.status_code == 401, (method, path, token, answer.status_code, answer.text)
            text = message(answer)  # the error shape of its protocol: OpenAI's under /v1, OIP's under /v2
            assert ("needs an API key" if token is None else "not known") in text, (path, text)


# -- failures recorded with the key id, and lockouts -----------------------------------------


def test_refusals_are_audited_with_the_key_id_claimed_and_why(guarded: Server) -> None:
    token = new_key(guarded)
    ident = key_id(token)
    revoked = new_key(guarded)
    assert models(guarded, revoked).status_code == 200
    cli("keys", "revoke", key_id(revoked), data_dir=guarded.data_dir)
    unknown = f"xrs_{secrets.token_hex(4)}_whatever"
    assert models(guarded, f"xrs_{ident}_wrong-secret").status_code == 401
    assert models(guarded, unknown).status_code == 401
    time.sleep(1.1)  # the server caches key lookups for a second
    assert models(guarded, revoked).status_code == 401

    def refused(records: list[dict]) -> dict[str | None, str]:
        return {r["key_id"]: r["note"] for r in records if r["status"] == 401 and r["route"] == "/v1/models"}

    notes = refused(audit_records(guarded.data_dir, lambda records: len(refused(records)) >= 3))
    assert notes.get(ident) == "wrong secret"
    assert notes.get(key_id(unknown)) == "unknown key id"
    assert notes.get(key_id(revoked)) == "revoked"


def test_guessing_locks_the_key_id_even_for_the_right_secret(guarded: Server) -> None:
    token, other = new_key(guarded), new_key(guarded)
    wrong = f"xrs_{key_id(token)}_guess"
    assert [models(guarded, wrong).status_code for _ in range(3)] == [401, 401, 401]
    locked = models(guarded, token)
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["Retry-After"]) >= 1
    assert key_id(token) in message(locked) and "even with the right secret" in message(locked)
    assert models(guarded, other).status_code == 200  # another key id from the same address is not locked
    with SessionClient(guarded.url, token) as session:  # the XR session too
        assert session.hello["type"] == "error" and session.hello["status"] == 429

    def locked_out(records: list[dict]) -> list[dict]:
        return [r for r in records if r["status"] == 429 and r["key_id"] == key_id(token)]

    records = locked_out(audit_records(guarded.data_dir, lambda records: bool(locked_out(records))))
    assert "locked out" in records[-1]["note"]

    time.sleep(int(locked.headers["Retry-After"]) + 0.1)
    assert models(guarded, token).status_code == 200  # the lock ended; a success forgets the failures
    assert [models(guarded, wrong).status_code for _ in range(3)] == [401, 401, 401]
    again = models(guarded, token)
    assert again.status_code == 429 and again.headers["Retry-After"] == "1"  # forgotten: a first lock again


def test_each_lock_is_longer_and_a_quiet_window_forgets(guarded: Server) -> None:
    token = new_key(guarded)
    wrong = f"xrs_{key_id(token)}_guess"
    # two failures, then a quiet window: they are forgotten, so two more do not lock
    assert [models(guarded, wrong).status_code for _ in range(2)] == [401, 401]
    time.sleep(2.2)
    assert [models(guarded, wrong).status_code for _ in range(2)] == [401, 401]
    assert models(guarded, token).status_code == 200
    # three within the window lock it for 1 s; the next three for 2 s
    assert [models(guarded, wrong).status_code for _ in range(3)] == [401, 401, 401]
    first = models(guarded, wrong)
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert [models(guarded, wrong).status_code for _ in range(3)] == [401, 401, 401]
    second = models(guarded, token)
    assert second.status_code == 429 and second.headers["Retry-After"] == "2"


def test_an_address_is_locked_and_placeholders_never_count(tmp_path: Path) -> None:
    server = start_guarded(tmp_path, "key=100,address=4,window=30,first=30,max=60", "--dev")
    try:
        good = new_key(server)
        there = "127.0.0.2"
        for placeholder in ("EMPTY", "sk-no-key-required") * 5:  # what --dev lets through never counts
            assert models(server, placeholder, there).status_code == 200
        assert models(server, None, there).status_code == 200
        for _ in range(4):
            assert models(server, f"xrs_{secrets.token_hex(4)}_guess", there).status_code == 401
        locked = models(server, good, there)
        assert locked.status_code == 429 and "127.0.0.2" in message(locked)
        assert 25 <= int(locked.headers["Retry-After"]) <= 30
        assert models(server, good).status_code == 200  # from 127.0.0.1: another address
    finally:
        server.stop()


# -- rotation --------------------------------------------------------------------------------


def test_rotation_keeps_the_old_secret_for_the_grace_period(guarded: Server) -> None:
    old = new_key(guarded, "--name", "headset")
    assert models(guarded, old).status_code == 200  # the server has the old secret cached
    new = cli("keys", "rotate", key_id(old), "--grace", "2s", "--quiet", data_dir=guarded.data_dir).stdout.strip()
    assert new.startswith(f"xrs_{key_id(old)}_") and new != old
    rotated = time.monotonic()
    assert models(guarded, new).status_code == 200  # seen at once, without a restart
    assert models(guarded, old).status_code == 200  # within the grace period
    listing = cli("keys", "list", data_dir=guarded.data_dir).stdout
    assert "works" in listing and new.split("_")[2] not in listing  # the rotation column (rich may wrap it)

    def graced(records: list[dict]) -> bool:
        return any(r["key_id"] == key_id(old) and "old secret" in (r["note"] or "") for r in records)

    assert graced(audit_records(guarded.data_dir, graced))  # who still uses the old secret shows in the audit
    time.sleep(max(0.0, 2.1 - (time.monotonic() - rotated)))
    refused = models(guarded, old)
    assert refused.status_code == 401 and "rotated" in message(refused), refused.text
    assert models(guarded, new).status_code == 200
    assert "ended" in cli("keys", "list", data_dir=guarded.data_dir).stdout


def test_rotation_without_grace_and_its_errors(guarded: Server) -> None:
    old = new_key(guarded)
    assert models(guarded, old).status_code == 200
    new = cli("keys", "rotate", key_id(old), "--grace", "0", "-q", data_dir=guarded.data_dir).stdout.strip()
    time.sleep(1.1)  # like a revocation: within the server's one-second key cache
    refused = models(guarded, old)
    assert refused.status_code == 401 and "rotated" in message(refused)
    assert models(guarded, new).status_code == 200

    unknown = cli("keys", "rotate", "deadbeef", data_dir=guarded.data_dir, check=False)
    assert unknown.returncode == 2 and "no key with id 'deadbeef'" in unknown.stderr
    negative = cli("keys", "rotate", key_id(new), "--grace=-1h", data_dir=guarded.data_dir, check=False)
    assert negative.returncode == 2 and "--grace" in negative.stderr
    cli("keys", "revoke", key_id(new), data_dir=guarded.data_dir)
    gone = cli("keys", "rotate", key_id(new), data_dir=guarded.data_dir, check=False)
    assert gone.returncode == 2 and "revoked" in gone.stderr
