"""Shared state in PostgreSQL (issue 13): two servers and the CLI on one real, throwaway PostgreSQL.

A key made by `xrserve keys create --database URL` works on both servers; rotated and then revoked,
both refuse it within 2 s; both servers' audit records land in one trail that `xrserve audit verify
--database URL` passes, and fails once a record is edited with psql; the schema migrations run once.
When the database goes away, requests get the audit trail's 503 and are served again once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, cli, start_server, write_sleepy_model
from tests.postgres import Cluster, start_cluster
from tests.session_client import SessionClient

SQLITE_FILES = ("keys.db", "audit.db")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def servers(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("shared")
    repo = tmp / "repo"
    write_sleepy_model(repo)
    write_sleepy_model(repo, version="2")
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp / name).mkdir()
            started.append(start_server(tmp / name, "--no-builtins", "--database", cluster.url(), repo=repo))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def infer(server: Server, key: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    return httpx.post(
        f"{server.url}/v2/models/echo/infer", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def until_refused(servers: tuple[Server, ...], key: str, within_s: float) -> float:
    """Seconds until every server answers the key 401 (polled every 50 ms); fails after `within_s`."""
    started = time.monotonic()
    waiting = list(servers)
    while waiting:
        waiting = [server for server in waiting if infer(server, key).status_code != 401]
        elapsed = time.monotonic() - started
        assert elapsed <= within_s, f"{[s.url for s in waiting]} still accept the key after {elapsed:.2f} s"
        if waiting:
            time.sleep(0.05)
    return time.monotonic() - started


def database(cluster: Cluster, tmp: Path, *args: str, check: bool = True):  # noqa: ANN201
    """`xrserve ARGS --database URL`, with a data directory of its own that must stay empty."""
    return cli(*args, "--database", cluster.url(), data_dir=tmp / "cli-data", check=check)


def test_keys_and_the_audit_trail_are_shared_by_two_servers(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = servers
    # the first server applied the migrations, the second found them applied
    migrations = cluster.psql("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [line.split("|")[1] for line in migrations.splitlines()] == [
        "api_keys",
        "audit",
        "rate_buckets",
        "sessions_and_versions",
    ]
    assert (
        "schema migrations applied now: 0001_api_keys, 0002_audit, 0003_rate_buckets, 0004_sessions_and_versions"
        in a.log.read_text()
    )
    assert "schema up to date" in b.log.read_text()
    for server in servers:  # keys and the trail are in the database, not in the data directory
        assert not any((server.data_dir / name).exists() for name in SQLITE_FILES)

    key = database(cluster, tmp_path, "keys", "create", "--scope", "echo", "--name", "shared", "-q").stdout.strip()
    key_id = key.split("_")[1]
    assert all(infer(server, key).status_code == 200 for server in servers)
    listed = database(cluster, tmp_path, "keys", "list").stdout
    assert key_id in listed and "shared" in listed and "active" in listed

    # rotation with no grace: the new secret works at once on both, the old one stops within 2 s
    new = database(cluster, tmp_path, "keys", "rotate", key_id, "--grace", "0", "-q").stdout.strip()
    assert all(infer(server, new).status_code == 200 for server in servers)
    until_refused(servers, key, within_s=2.0)

    database(cluster, tmp_path, "keys", "revoke", key_id)
    took = until_refused(servers, new, within_s=2.0)
    print(f"revocation held on both servers after {took:.2f} s")
    refused = infer(a, new).json()
    assert "revoked" in refused["error"]
    assert database(cluster, tmp_path, "keys", "list").stdout.count("revoked") == 1

    # one trail: each server's chain, both with the revoked key's refusals
    chains = cluster.psql(
        "SELECT chain, count(*), count(*) FILTER (WHERE status = 401 AND note = 'revoked') FROM audit GROUP BY chain"
    ).splitlines()
    assert len(chains) == 2 and all(int(line.split("|")[2]) >= 1 for line in chains), chains
    tail = database(cluster, tmp_path, "audit", "tail", "-n", "500", "--json").stdout
    assert tail.count(f'"key_id": "{key_id}"') >= 6  # 2 accepted, 2 with the new secret, refusals
    verified = database(cluster, tmp_path, "audit", "verify", check=False)
    assert verified.returncode == 0, verified.stderr
    assert " in 2 chains " in verified.stdout
    assert not (tmp_path / "cli-data").exists() or not any((tmp_path / "cli-data").iterdir())

    # an edited record: `audit verify` names it
    edited = cluster.psql(
        "UPDATE audit SET status = 200 WHERE id = (SELECT min(id) FROM audit WHERE note = 'revoked') "
        "RETURNING chain, seq"
    ).splitlines()[0]
    chain, seq = edited.split("|")
    tampered = database(cluster, tmp_path, "audit", "verify", check=False)
    assert tampered.returncode == 1, tampered.stdout
    assert f"record #{seq} of chain {chain}" in tampered.stderr and "altered" in tampered.stderr
    cluster.psql(f"UPDATE audit SET status = 401 WHERE chain = '{chain}' AND seq = {seq}")
    assert database(cluster, tmp_path, "audit", "verify").returncode == 0

    # the CLI opened the database eight times meanwhile: every migration is still the one applied at first
    assert cluster.psql("SELECT version, name, applied_at FROM schema_migrations ORDER BY version") == migrations


def test_a_server_refuses_requests_while_the_database_is_down(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = servers
    key = database(cluster, tmp_path, "keys", "create", "--scope", "admin", "-q").stdout.strip()
    assert infer(a, key).status_code == 200
    # /v1/audit on one server shows the other's records too: both refused the revoked key of the test before
    page = httpx.get(f"{b.url}/v1/audit?limit=1000", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert page.status_code == 200, page.text
    revoked = [r for r in page.json()["data"] if r["status"] == 401 and r["note"] == "revoked"]
    assert len(revoked) >= 2, page.json()["data"][:5]
    cluster.stop()
    try:
        down = infer(a, key)
        assert down.status_code == 503, down.text
        assert "audit trail cannot be written" in down.text or "cannot be reached" in down.text, down.text
        failed = database(cluster, tmp_path, "keys", "list", check=False)
        assert failed.returncode == 2 and "cannot use the database PostgreSQL postgres@127.0.0.1" in failed.stderr
    finally:
        cluster.start()
    # a's last write failed, which refuses its requests: once the database is back, none is refused for the trail
    # (a request finds it writable again before refusing on an old failure); the key store may still answer its
    # own 503 for a second while its pool reconnects
    give_up = time.monotonic() + 15
    while (answer := infer(a, key)).status_code != 200:
        assert "audit trail" not in answer.text, answer.text
        assert time.monotonic() < give_up, f"still {answer.status_code} after the database came back: {answer.text}"
        time.sleep(0.2)
    # b was idle meanwhile: its pooled connections and its audit writer's died with the database, unnoticed;
    # its first request after the restart is served all the same (they are checked or replaced, not failed on)
    first = infer(b, key)
    assert first.status_code == 200, first.text
    verified = database(cluster, tmp_path, "audit", "verify", check=False)
    assert verified.returncode == 0, verified.stderr


def test_migrations_apply_once_each_in_a_transaction_and_are_never_edited(cluster: Cluster, tmp_path: Path) -> None:
    import psycopg

    from xrserve.security.migrations import migrate

    cluster.psql("CREATE DATABASE migrations", database="postgres")
    files = tmp_path / "migrations"
    files.mkdir()
    (files / "0001_first.sql").write_text("CREATE TABLE first (x integer);")
    with psycopg.connect(cluster.url("migrations"), autocommit=True) as conn:
        assert migrate(conn, files) == ["0001_first"]
        assert migrate(conn, files) == []  # applied once
        # a failing migration leaves nothing behind: neither its first statement nor its row
        (files / "0002_broken.sql").write_text("CREATE TABLE second (x integer); SELECT 1 / 0;")
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn, files)
        assert conn.execute("SELECT to_regclass('second')").fetchone() == (None,)
        (files / "0002_broken.sql").write_text("CREATE TABLE second (x integer);")
        assert migrate(conn, files) == ["0002_broken"]
        (files / "0001_first.sql").write_text("CREATE TABLE first (x bigint);")
        with pytest.raises(RuntimeError, match="0001_first was changed after it was applied"):
            migrate(conn, files)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert versions == [(1,), (2,)]


def test_servers_can_run_as_a_role_that_may_only_add_audit_records(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    """docs/scaling.md's hardening: a migrated database needs no DDL, and servers no UPDATE or DELETE on the trail."""
    import psycopg

    from xrserve.security.audit import AuditRecord
    from xrserve.security.keys import ApiKey, Limits
    from xrserve.security.limits import RateLimits
    from xrserve.security.storage import open_database

    cluster.psql(
        "CREATE ROLE xrserve_server LOGIN; GRANT SELECT ON schema_migrations, api_keys TO xrserve_server; "
        "GRANT SELECT, INSERT ON audit, audit_anchor TO xrserve_server; "
        "GRANT SELECT, INSERT, UPDATE ON rate_buckets TO xrserve_server"
    )
    url = cluster.url().replace("postgres@", "xrserve_server@")
    store = open_database(url, tmp_path)
    try:
        audit = store.audit_log()
        audit.record(AuditRecord(time.time(), None, "GET", "/v2/health/ready", None, None, 200, 0.1))
        audit.close()
        store.key_store().list()  # reading keys is all a server does with them
        limited = ApiKey("role0001", "role", ("*",), time.time(), None, None, limits=Limits(rpm=5))
        RateLimits(shared=store.rate_buckets()).admit_request(limited)  # its rate-limit buckets
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit SET status = 200")
    finally:
        store.close()
    assert database(cluster, tmp_path, "audit", "verify").returncode == 0


def test_a_database_that_is_not_postgresql_is_one_line(tmp_path: Path) -> None:
    result = cli("keys", "list", "--database", "mysql://root:hunter2@db/x", data_dir=tmp_path, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "--database must be a PostgreSQL URL" in lines[0] and "hunter2" not in lines[0]


def test_two_servers_share_a_keys_requests_per_minute(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    """--rpm 6 is 6 requests for the key over both servers together, not 6 on each."""
    key = database(cluster, tmp_path, "keys", "create", "--scope", "echo", "--rpm", "6", "-q").stdout.strip()
    answers = [infer(servers[i % 2], key) for i in range(10)]  # a, b, a, b, ...: well under 10 s, < 1 token refilled
    assert [answer.status_code for answer in answers] == [200] * 6 + [429] * 4
    remaining = [int(answer.headers["x-ratelimit-remaining-requests"]) for answer in answers[:6]]
    assert remaining == [5, 4, 3, 2, 1, 0]  # each server saw what the other took
    refused = answers[-1]
    assert "over its limit of 6 requests per minute" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 10


def test_shared_token_budgets_and_a_changed_limit(cluster: Cluster, servers: tuple[Server, Server]) -> None:
    """Two replicas' RateLimits on one database: tokens charged on one are spent on the other; a larger limit adds
    the difference to what is left (as in memory)."""
    from xrserve.security.keys import ApiKey, Limits
    from xrserve.security.limits import RateLimited, RateLimits
    from xrserve.security.storage import open_database

    store = open_database(cluster.url(), Path("/nonexistent"))
    try:
        one, other = RateLimits(shared=store.rate_buckets()), RateLimits(shared=store.rate_buckets())
        key = ApiKey("budget01", "budget", ("*",), time.time(), None, None, limits=Limits(rpm=2, tpm=100))
        one.check_tokens(key)
        one.charge_tokens(key, 150)  # a generation used more than the minute's budget
        with pytest.raises(RateLimited, match="has used its 100 LLM tokens per minute") as over:
            other.check_tokens(key)
        assert 25 < over.value.retry_after_s <= 31  # -50 tokens at 100/60 a second: ~30 s to get above 0
        one.admit_request(key)
        other.admit_request(key)
        with pytest.raises(RateLimited):
            one.admit_request(key)
        bigger = ApiKey(key.id, key.name, key.scopes, key.created, None, None, limits=Limits(rpm=4, tpm=100))
        other.admit_request(bigger)  # 2 more for the larger bucket
        one.admit_request(bigger)
        with pytest.raises(RateLimited):
            other.admit_request(bigger)
    finally:
        store.close()


def test_a_keys_open_sessions_are_counted_over_both_servers(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    """--max-sessions 1: with a session open on one server, the other refuses the key's second one."""
    key = database(cluster, tmp_path, "keys", "create", "--scope", "echo", "--max-sessions", "1", "-q").stdout.strip()
    with SessionClient(servers[0].url, key) as first:
        assert first.hello["type"] == "hello"
        second = SessionClient(servers[1].url, key)
        try:
            assert second.hello["type"] == "error" and second.hello["status"] == 429
            assert "already has 1 session(s) open" in second.hello["message"]
        finally:
            second.close()
    give_up = time.monotonic() + 10  # closed on the first server: the second one may open it now
    while True:
        with SessionClient(servers[1].url, key) as third:
            if third.hello["type"] == "hello":
                break
            assert time.monotonic() < give_up, third.hello


def test_a_version_promoted_on_one_server_is_the_default_on_both(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    admin = database(cluster, tmp_path, "keys", "create", "--scope", "admin", "-q").stdout.strip()

    def version_served(server: Server) -> str:
        return infer(server, admin).json()["model_version"]

    assert [version_served(s) for s in servers] == ["2", "2"]  # the newest ready, with nothing promoted
    promoted = httpx.post(
        f"{servers[0].url}/v2/repository/models/echo/promote",
        json={"version": "1"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert promoted.status_code == 200, promoted.text
    give_up = time.monotonic() + 3  # the other server reads the promoted versions every second
    while version_served(servers[1]) != "1":
        assert time.monotonic() < give_up, "the other server still serves version 2"
        time.sleep(0.1)
    assert version_served(servers[0]) == "1"
    rolled_back = httpx.post(
        f"{servers[1].url}/v2/repository/models/echo/rollback", headers={"Authorization": f"Bearer {admin}"}
    )
    assert rolled_back.status_code == 200, rolled_back.text
    give_up = time.monotonic() + 3
    while version_served(servers[0]) != "2":
        assert time.monotonic() < give_up, "the rollback on the other server did not reach this one"
        time.sleep(0.1)


def test_a_canary_started_on_one_server_runs_on_both_and_ends_on_both(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    admin = database(cluster, tmp_path, "keys", "create", "--scope", "admin", "-q").stdout.strip()
    headers = {"Authorization": f"Bearer {admin}"}
    canary = "/v2/repository/models/echo/canary"
    httpx.post(f"{servers[0].url}/v2/repository/models/echo/promote", json={"version": "1"}, headers=headers)
    started = httpx.post(f"{servers[0].url}{canary}", json={"version": "2", "percent": 50}, headers=headers)
    assert started.status_code == 200, started.text

    def state_on(server: Server) -> dict:
        return httpx.get(f"{server.url}{canary}", headers=headers).json()

    give_up = time.monotonic() + 3  # the other server follows the canaries table every second
    while not state_on(servers[1])["active"]:
        assert time.monotonic() < give_up, "the canary did not reach the other server"
        time.sleep(0.1)
    assert (state_on(servers[1])["version"], state_on(servers[1])["percent"]) == ("2", 50)
    served = {infer(servers[1], admin).json()["model_version"] for _ in range(10)}
    assert served == {"1", "2"}  # half of the requests without a version go to the canary there too
    ended = httpx.delete(f"{servers[1].url}{canary}", headers=headers)
    assert ended.status_code == 200, ended.text
    give_up = time.monotonic() + 3
    while state_on(servers[0])["active"]:
        assert time.monotonic() < give_up, "ending the canary on one server did not end it on the other"
        time.sleep(0.1)
    assert {infer(servers[0], admin).json()["model_version"] for _ in range(6)} == {"1"}


def test_failed_key_attempts_lock_a_key_id_on_every_replica(cluster: Cluster) -> None:
    """Two replicas' lockouts on one database: failures on both count together, and the lock made on one
    holds on the other once it has read the locks in force (the server does that every second)."""
    from xrserve.security.lockout import LockedOut, LockoutPolicy, Lockouts
    from xrserve.security.storage import open_database

    store = open_database(cluster.url(), Path("/nonexistent"))
    try:
        policy = LockoutPolicy(key_failures=3, address_failures=1000, first_lock_s=30)
        one, other = Lockouts(policy, shared=store.lockouts()), Lockouts(policy, shared=store.lockouts())
        one.failed("guess001", "10.0.0.1")
        one.failed("guess001", "10.0.0.2")
        one.check("guess001", "10.0.0.1")  # two failures: not locked yet
        other.failed("guess001", "10.0.0.3")  # the third, on the other replica
        with pytest.raises(LockedOut, match="guess001: locked for 30 s more"):
            other.check("guess001", None)
        one.check("guess001", None)  # not read yet
        one.follow(store.lockouts().locked())
        with pytest.raises(LockedOut, match="locked for 30 s more") as locked:
            one.check("guess001", "10.0.0.9")
        assert locked.value.subject == "key id guess001"
        one.failed("other002", None)
        one.succeeded("other002")  # the right secret: its failures are forgotten in the shared row too
        assert cluster.psql("SELECT count(*) FROM lockouts WHERE name = 'other002'").strip() == "0"
    finally:
        store.close()


def test_keys_of_a_data_directory_are_imported_as_they_are(
    cluster: Cluster, servers: tuple[Server, Server], tmp_path: Path
) -> None:
    """`xrserve keys import --from-data-dir`: the same secrets work against the shared database; a revoked key
    stays revoked; importing again adds nothing."""
    old = tmp_path / "old-data"
    kept = cli("keys", "create", "--scope", "echo", "--rpm", "100", "-q", data_dir=old).stdout.strip()
    gone = cli("keys", "create", "--scope", "echo", "-q", data_dir=old).stdout.strip()
    cli("keys", "revoke", gone.split("_")[1], data_dir=old)
    imported = database(cluster, tmp_path, "keys", "import", "--from-data-dir", str(old)).stdout
    assert "2 of 2 keys copied" in imported
    assert infer(servers[0], kept).status_code == 200
    assert infer(servers[1], gone).status_code == 401
    listed = database(cluster, tmp_path, "keys", "list").stdout
    assert kept.split("_")[1] in listed and "rpm 100" in listed
    again = database(cluster, tmp_path, "keys", "import", "--from-data-dir", str(old)).stdout
    assert "0 of 2 keys copied" in again
    refused = database(cluster, tmp_path, "keys", "import", "--from-data-dir", str(tmp_path), check=False)
    assert refused.returncode == 2 and "keys.db does not exist" in refused.stderr
