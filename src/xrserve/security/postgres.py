"""The shared store in PostgreSQL: API keys and the audit trail of every server process that names it.

`xrserve serve|keys|audit --database postgresql://USER@HOST:PORT/DB`. Opening it applies the schema
migrations it lacks (security/migrations/), then keeps a small connection pool (psycopg_pool) for
key lookups, the CLI and reads of the trail, and one connection of its own for audit writes.

**Keys.** The same rows as keys.db. `KeyStore` caches each key's row for `CACHE_S` (1 s) and reads
it again after that, so a revocation, rotation or limit change made by the CLI on any machine
holds on every replica within about a second. A lookup is one indexed SELECT (a round trip, on the
event loop, at most once a second per key in use). When the database cannot be reached a key
lookup answers 503 (never lets a request in unchecked), and for the next second the others
answer 503 at once rather than each waiting on the network.

**Audit.** The same records, chains and anchors as audit.db. Records are written by the audit
log's writer thread (the event loop awaits it): each batch, one or a few records and the anchor
when one is due, is one INSERT statement (one round trip; a larger batch is one COPY in a
transaction), committed before any of their answers is sent. The writer's connection runs with
`synchronous_commit = off`: a commit returns once the record is in PostgreSQL (its WAL buffers),
without waiting for the disk, and PostgreSQL writes it to disk within 3 x `wal_writer_delay` (600 ms
by default). That is the counterpart of audit.db's `synchronous=NORMAL`: a `kill -9` of xrserve
loses no record of an answered request; a crash of the database server or its machine may lose the
records of the last fraction of a second (as a power loss may with SQLite), never corrupt the trail.
When a write fails (the database down, a full disk there), requests are refused with 503 until a
record can be written again, as with SQLite; the writer connects again by itself.

**Rate limits.** A key's buckets (requests per minute, LLM tokens per minute and per day, camera
frames per second) are rows of `rate_buckets`. Taking a request, checking the token budget and
charging tokens are each one INSERT ... ON CONFLICT DO UPDATE ... RETURNING on the key's row: the
row lock makes concurrent replicas take one after the other, the refill uses the database's clock,
and a key seen for the first time gets a full bucket in the same statement. It runs on the event
loop, like the key lookup, and only for keys that have that limit. An unreachable database is a
503, never an unlimited pass.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from xrserve.core.errors import Unavailable
from xrserve.security.audit import AuditLog
from xrserve.security.keys import _COLUMNS, KeyStore
from xrserve.security.limits import TokenBucket
from xrserve.security.lockout import LockoutPolicy
from xrserve.security.migrations import migrate
from xrserve.security.storage import StoreUnreachable

#: how long a connection attempt may take
CONNECT_TIMEOUT_S = 3
#: how long a key lookup waits for a connection of the pool (when every one is busy)
POOL_TIMEOUT_S = 3.0
#: after a failed lookup, key lookups answer 503 at once for this long rather than each waiting on the network
BACKOFF_S = 1.0
#: the audit writer's connection, unused this long, is checked before a record is sent on it (sooner when the
#: server sent something unasked: see PostgresAuditTable._connection)
IDLE_CHECK_S = 1.0

T = TypeVar("T")


def describe(url: str) -> str:
    """`PostgreSQL user@host:port/db`: the URL without its password, for messages and the start-up line."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (an unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"PostgreSQL {user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or ''}"


def _reason(exc: BaseException) -> str:
    """psycopg's message on one line."""
    return re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__


def _has_input(conn: psycopg.Connection[Any]) -> bool:
    """Is there something to read on a connection that is waiting for nothing? Its server's goodbye, mostly."""
    try:
        poller = select.poll()  # not select(): a busy server's descriptors pass 1024
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):  # no socket any more: stale too
        return True


def _commit_without_waiting(conn: psycopg.Connection[Any]) -> None:
    """Pooled sessions commit without waiting for the disk (`synchronous_commit = off`): a rate-limit bucket's
    update (one per request of a limited key) then costs a round trip, not an fsync (~2 ms measured here); a
    crash of the database may forget the last fraction of a second of counting. Changes to keys opt back in."""
    conn.execute("SET synchronous_commit TO off")


class PostgresDatabase:
    """A PostgreSQL database as xrserve's store (see `security.storage.Database`)."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.where = describe(url)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                self.migrated = migrate(conn)
        except psycopg.Error as exc:
            raise StoreUnreachable(f"cannot use the database {self.where}: {_reason(exc)}") from exc
        except RuntimeError as exc:  # a migration changed after it was applied, or one from a newer xrserve
            raise StoreUnreachable(f"the database {self.where}: {exc}") from exc
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=POOL_TIMEOUT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_commit_without_waiting,
            name="xrserve",
            open=False,
        )
        self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
        self._down_until = 0.0
        self._down: str | None = None  # why the last call failed, while within BACKOFF_S

    def run(self, work: Callable[[psycopg.Connection[Any]], T], what: str) -> T:
        """`work` on a pooled connection; connections found broken (the server restarted meanwhile) are replaced.

        An unreachable database raises `Unavailable` (503) saying `what` cannot be reached; for
        `BACKOFF_S` after that, calls fail at once with the same answer.
        """
        if self._down is not None and time.monotonic() < self._down_until:
            raise Unavailable(self._down)
        attempts = (self.pool.max_size or 1) + 1  # every pooled connection may have gone stale at once
        for attempt in range(1, attempts + 1):
            broken = False
            try:
                with self.pool.connection() as conn:
                    try:
                        result = work(conn)
                    except psycopg.OperationalError:
                        broken = conn.broken
                        raise
                self._down = None
                return result
            except psycopg.OperationalError as exc:
                if broken and attempt < attempts and not isinstance(exc, PoolTimeout):
                    continue  # the pool drops it; a stale connection fails on sending, before the statement ran
                self._down = (
                    f"{what} ({self.where}) cannot be reached: {_reason(exc)}; requests that need it are refused "
                    "until it can"
                )
                self._down_until = time.monotonic() + BACKOFF_S
                raise Unavailable(self._down) from exc
        raise AssertionError("unreachable")

    def key_store(self) -> KeyStore:
        return KeyStore(PostgresKeyTable(self))

    def audit_log(self) -> AuditLog:
        try:
            return AuditLog(PostgresAuditTable(self))
        except psycopg.Error as exc:
            raise StoreUnreachable(f"cannot write the audit trail to {self.where}: {_reason(exc)}") from exc

    def audit_source(self) -> PostgresAuditTable:
        return PostgresAuditTable(self, writer=False)

    def has_audit(self) -> bool:
        return True  # the table exists once migrated; an empty trail verifies as OK with 0 records

    def session_leases(self) -> PostgresSessions:
        return PostgresSessions(self)

    def promoted_store(self) -> PostgresPromoted:
        return PostgresPromoted(self)

    def canary_store(self) -> PostgresCanaries:
        return PostgresCanaries(self)

    def lockouts(self) -> PostgresLockouts:
        return PostgresLockouts(self)

    def rate_buckets(self) -> PostgresBuckets:
        return PostgresBuckets(self)

    def close(self) -> None:
        self.pool.close()


class PostgresKeyTable:
    """api_keys in PostgreSQL (`security.keys.KeyTable`)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database
        self.where = database.where

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._db.run(work, "the key store")

    def _write(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """A change to keys waits until it is on the database's disk (the pool's sessions do not, see there)."""

        def durable(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit TO on")
                return work(conn)

        return self._db.run(durable, "the key store")

    def insert(self, key_id: str, digest: str, name: str, scopes: str, created: float, expires: float | None,
               limits: tuple[int, ...]) -> None:  # fmt: skip
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO api_keys (id, secret_sha256, name, scopes, created, expires, rpm, tpm, tpd, fps, "
                "max_sessions) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (key_id, digest, name, scopes, created, expires, *limits),
            )
        )

    def rotate(self, key_id: str, digest: str, now: float, until: float) -> tuple[bool, tuple | None]:
        def work(conn: psycopg.Connection[Any]) -> tuple[bool, tuple | None]:
            row = conn.execute(
                "UPDATE api_keys SET previous_sha256 = secret_sha256, secret_sha256 = %s, rotated = %s, "
                "previous_until = %s WHERE id = %s AND revoked IS NULL AND (expires IS NULL OR expires > %s) "
                f"RETURNING {_COLUMNS}",
                (digest, now, until, key_id, now),
            ).fetchone()
            if row is not None:
                return True, row
            return False, conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)).fetchone()

        return self._write(work)

    def update_limits(self, key_id: str, changes: dict[str, int]) -> tuple | None:
        params: tuple[object, ...] = (key_id,)
        query = f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s"
        if changes:  # the names are Limits.OPTIONS' (checked by KeyStore), never a caller's text
            assignments = ", ".join(f"{name} = %s" for name in changes)
            query = f"UPDATE api_keys SET {assignments} WHERE id = %s RETURNING {_COLUMNS}"
            params = (*changes.values(), key_id)
        return (self._write if changes else self._run)(lambda conn: conn.execute(query, params).fetchone())

    def revoke(self, key_id: str, now: float) -> bool:
        query = "UPDATE api_keys SET revoked = %s WHERE id = %s AND revoked IS NULL"
        return self._write(lambda conn: conn.execute(query, (now, key_id)).rowcount == 1)

    def copy_in(self, rows: list[tuple]) -> int:
        """Rows of another key table (`_COLUMNS`, then the two digests) that are not here yet; how many were new.

        Everything is kept as it is: revoked and expired keys stay so, a rotation's grace goes on.
        """

        def work(conn: psycopg.Connection[Any]) -> int:
            added = 0
            for row in rows:
                cursor = conn.execute(
                    f"INSERT INTO api_keys ({_COLUMNS}, secret_sha256, previous_sha256) "
                    f"VALUES ({', '.join(['%s'] * len(row))}) ON CONFLICT (id) DO NOTHING",
                    row,
                )
                added += cursor.rowcount
            return added

        return self._write(work)

    def records(self) -> list[tuple]:
        return self._run(lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created").fetchall())

    def credentials(self, key_id: str) -> tuple | None:
        query = f"SELECT {_COLUMNS}, secret_sha256, previous_sha256 FROM api_keys WHERE id = %s"
        return self._run(lambda conn: conn.execute(query, (key_id,)).fetchone())

    def close(self) -> None:
        pass  # the pool is the database's


_RECORD_COLUMNS = (
    "time, key_id, method, route, model, version, status, latency_ms, client, note, chain, seq, link, hash"
)
_FIELDS = "time, key_id, method, route, model, version, status, latency_ms, client, note"
_ROW = "(" + ", ".join(["%s"] * 14) + ")"
_ANCHOR_INSERT = "INSERT INTO audit_anchor (time, chain, seq, head, hash) VALUES (%s, %s, %s, %s, %s)"
#: a batch of more records than this is written with COPY in a transaction (measured on loopback: 8 records cost
#: 0.9 ms either way, 16 records 2.4 ms in one INSERT and 1.3 ms with COPY); fewer in one INSERT, one round trip
COPY_FROM = 8


class PostgresAuditTable:
    """audit and audit_anchor in PostgreSQL (`security.audit.AuditTable` and `AuditSource`)."""

    remote = True
    errors: tuple[type[BaseException], ...] = (psycopg.Error, OSError)

    def __init__(self, database: PostgresDatabase, *, writer: bool = True) -> None:
        self._db = database
        self.where = database.where
        self.remedy = f"make the database {database.where} reachable and writable again"
        self._conn: psycopg.Connection[Any] | None = None
        self._used = 0.0  # time.monotonic() of the connection's last use
        self._statements: dict[tuple[int, bool], str] = {}
        self._lock = threading.Lock()
        if writer:
            self._connection()  # at start: an unreachable database stops the server with a message

    def _connection(self) -> psycopg.Connection[Any]:
        """The writer's connection; checked first (an empty query) when it looks stale, made anew if it died.

        A connection whose server restarted while it was idle fails only when used: checked, it is replaced
        before a record is sent on it, so the first request after a database restart is not refused. It
        looks stale when the server sent something unasked (a restart's "terminating connection" and the
        close: a poll of the socket, no round trip; a restart can take under a second) or after a quiet
        spell (a peer that vanished without a word).
        """
        now = time.monotonic()
        conn = self._conn
        if conn is not None and not conn.broken and (now - self._used > IDLE_CHECK_S or _has_input(conn)):
            try:
                conn.execute("")
            except psycopg.OperationalError:
                pass  # broken now: replaced below
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            conn = psycopg.connect(self._db.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            conn.execute("SET synchronous_commit TO off")  # see the module's docstring
            self._conn = conn
        self._used = now
        return self._conn

    def last_head(self) -> tuple[str, int, str] | None:
        query = "SELECT chain, seq, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1"
        return self._connection().execute(query).fetchone()

    def _statement(self, count: int, anchor: bool) -> str:
        """One INSERT of `count` records, with the anchor's INSERT in the same statement (all or none)."""
        statement = self._statements.get((count, anchor))
        if statement is None:
            statement = f"INSERT INTO audit ({_RECORD_COLUMNS}) VALUES " + ", ".join([_ROW] * count)
            if anchor:
                statement = f"WITH anchor AS ({_ANCHOR_INSERT}) {statement}"
            statement = self._statements[(count, anchor)] = statement
        return statement

    def append(self, rows: list[tuple], anchor: tuple | None) -> None:
        with self._lock:
            conn = self._connection()
            if len(rows) > COPY_FROM:
                with conn.transaction(), conn.cursor() as cursor:
                    with cursor.copy(f"COPY audit ({_RECORD_COLUMNS}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    if anchor is not None:
                        cursor.execute(_ANCHOR_INSERT, anchor)
                return
            params = [value for row in rows for value in row]
            if anchor is not None:
                params = [*anchor, *params]
            conn.execute(self._statement(len(rows), anchor is not None), params)

    def add_anchor(self, anchor: tuple) -> None:
        with self._lock:
            self._connection().execute(_ANCHOR_INSERT, anchor)

    def checkpoint(self) -> None:
        pass  # PostgreSQL checkpoints by itself

    def reason(self, exc: BaseException) -> str:
        return _reason(exc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # reading: the pool, not the writer's connection

    def tail_rows(self, limit: int, after: float | None) -> list[tuple]:
        def work(conn: psycopg.Connection[Any]) -> list[tuple]:
            if after is None:
                query = f"SELECT {_FIELDS} FROM audit ORDER BY id DESC LIMIT %s"
                return conn.execute(query, (limit,)).fetchall()[::-1]
            return conn.execute(f"SELECT {_FIELDS} FROM audit WHERE time > %s ORDER BY id", (after,)).fetchall()

        return self._db.run(work, "the audit trail")

    def snapshot(self) -> tuple[list[tuple], list[tuple]]:
        def work(conn: psycopg.Connection[Any]) -> tuple[list[tuple], list[tuple]]:
            with conn.transaction():  # one snapshot: records and anchors as of the same moment
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = conn.execute(f"SELECT id, {_FIELDS}, chain, seq, link, hash FROM audit ORDER BY id").fetchall()
                query = "SELECT id, time, chain, seq, head, hash FROM audit_anchor ORDER BY id"
                return rows, conn.execute(query).fetchall()

        return self._db.run(work, "the audit trail")


# The old row's bucket refilled to the database's time now (excluded.stamp), then resized to the limit asked for
# (a changed limit keeps what was used: a larger bucket gains the difference), as TokenBucket does in memory.
_REFILLED = "least(b.capacity, b.tokens + greatest(0, excluded.stamp - b.stamp) * b.per_s)"
_RESIZED = f"least(excluded.capacity, {_REFILLED} + greatest(0, excluded.capacity - b.capacity))"
_BUCKET = f"""
INSERT INTO rate_buckets AS b (key_id, kind, capacity, per_s, tokens, stamp, taken)
VALUES (%(key)s, %(kind)s, %(capacity)s, %(per_s)s,
        %(capacity)s - CASE WHEN %(capacity)s >= %(need)s THEN %(amount)s ELSE 0 END,
        extract(epoch FROM clock_timestamp()), %(capacity)s >= %(need)s)
ON CONFLICT (key_id, kind) DO UPDATE SET
    tokens = {_RESIZED} - CASE WHEN {_RESIZED} >= %(need)s THEN %(amount)s ELSE 0 END,
    taken = {_RESIZED} >= %(need)s,
    capacity = excluded.capacity,
    per_s = excluded.per_s,
    stamp = greatest(b.stamp, excluded.stamp)
RETURNING taken, tokens
"""
#: "positive" asks for at least this much and takes nothing
_ANY = 1e-300


class PostgresBuckets:
    """Rate-limit buckets in `rate_buckets` (`security.limits.SharedBuckets`)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def bucket(self, key_id: str, kind: str, capacity: float, per_s: float, now: float) -> PostgresBucket:
        return PostgresBucket(self._db, key_id, kind, capacity, per_s, now)


class PostgresBucket:
    """One key's bucket of one kind: each take, check or charge is one statement on its row.

    What the database answered last is kept in a local `TokenBucket` (refilled by the local clock),
    for the `x-ratelimit-*` headers and Retry-After, which then cost no round trip.
    """

    __slots__ = ("_db", "_params", "_local")

    def __init__(self, database: PostgresDatabase, key_id: str, kind: str, capacity: float, per_s: float,
                 now: float) -> None:  # fmt: skip
        self._db = database
        self._params: dict[str, object] = {"key": key_id, "kind": kind}
        self._local = TokenBucket(capacity, per_s, now)

    @property
    def capacity(self) -> float:
        return self._local.capacity

    def _apply(self, now: float, need: float, amount: float) -> bool:
        params = {**self._params, "capacity": float(self._local.capacity), "per_s": float(self._local.per_s),
                  "need": float(need), "amount": float(amount)}  # fmt: skip
        row = self._db.run(lambda conn: conn.execute(_BUCKET, params).fetchone(), "the rate limits")
        assert row is not None
        self._local.tokens, self._local.stamp = row[1], now
        return bool(row[0])

    def take(self, now: float, amount: float = 1.0) -> bool:
        return self._apply(now, amount, amount)

    def positive(self, now: float) -> bool:
        return self._apply(now, _ANY, 0.0)

    def charge(self, now: float, amount: float) -> None:
        self._apply(now, float("-inf"), amount)

    def remaining(self, now: float) -> int:
        return self._local.remaining(now)

    def wait_s(self, now: float, amount: float = 1.0) -> float:
        return self._local.wait_s(now, amount)

    def reset_s(self, now: float) -> float:
        return self._local.reset_s(now)

    def resize(self, capacity: float, per_s: float, now: float) -> None:
        self._local.resize(capacity, per_s, now)  # the row follows at its next statement


LEASE_TTL_S = 30.0  # a session lease not renewed for this long (its front died) stops counting


class PostgresSessions:
    """Open XR sessions of keys with `--max-sessions`, as leases in `session_leases` (`SharedSessions`).

    Opening takes a transaction-scoped advisory lock on the key, so two replicas opening the key's last
    free session at once are ordered: one gets it, the other counts it and refuses.
    """

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def open(self, key_id: str, limit: int) -> tuple[str | None, int]:
        lease = f"{key_id}:{uuid.uuid4().hex}"

        def work(conn: psycopg.Connection[Any]) -> tuple[str | None, int]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key_id,))
                row = conn.execute(
                    "SELECT count(*) FROM session_leases WHERE key_id = %s AND expires > extract(epoch FROM now())",
                    (key_id,),
                ).fetchone()
                count = int(row[0]) if row else 0
                if count >= limit:
                    return None, count
                conn.execute(
                    "INSERT INTO session_leases (lease, key_id, expires) "
                    "VALUES (%s, %s, extract(epoch FROM now()) + %s)",
                    (lease, key_id, LEASE_TTL_S),
                )
                return lease, count + 1

        return self._db.run(work, "the session counts")

    def close(self, lease: str) -> None:
        with contextlib.suppress(Unavailable):  # unreachable now: the lease expires by itself
            self._db.run(lambda conn: conn.execute("DELETE FROM session_leases WHERE lease = %s", (lease,)), "sessions")

    def renew(self, leases: list[str]) -> None:
        self._db.run(
            lambda conn: conn.execute(
                "UPDATE session_leases SET expires = extract(epoch FROM now()) + %s WHERE lease = ANY(%s)",
                (LEASE_TTL_S, leases),
            ),
            "the session counts",
        )


class PostgresPromoted:
    """Promoted versions in `promoted_versions`, one row per model (`core.promoted.PromotedStore`)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def load(self) -> dict[str, list[str]]:
        rows = self._db.run(
            lambda conn: conn.execute("SELECT model, history FROM promoted_versions").fetchall(), "promoted versions"
        )
        return {str(model): [str(v) for v in history] for model, history in rows if history}

    def save(self, name: str, history: list[str]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            if history:
                conn.execute(
                    "INSERT INTO promoted_versions (model, history) VALUES (%s, %s) "
                    "ON CONFLICT (model) DO UPDATE SET history = EXCLUDED.history",
                    (name, history),
                )
            else:
                conn.execute("DELETE FROM promoted_versions WHERE model = %s", (name,))

        self._db.run(work, "promoted versions")


class PostgresCanaries:
    """Running canaries in `canaries`, one row per model (`core.canary.CanaryStore`)."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def load(self) -> dict[str, tuple[str, str, float]]:
        rows = self._db.run(
            lambda conn: conn.execute("SELECT model, version, stable, percent FROM canaries").fetchall(), "canaries"
        )
        return {str(model): (str(version), str(stable), float(percent)) for model, version, stable, percent in rows}

    def save(self, name: str, row: tuple[str, str, float]) -> None:
        self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO canaries (model, version, stable, percent) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (model) DO UPDATE SET version = EXCLUDED.version, stable = EXCLUDED.stable, "
                "percent = EXCLUDED.percent",
                (name, *row),
            ),
            "canaries",
        )

    def delete(self, name: str) -> None:
        self._db.run(lambda conn: conn.execute("DELETE FROM canaries WHERE model = %s", (name,)), "canaries")


class PostgresLockouts:
    """Failed key attempts and locks in `lockouts` (`security.lockout.SharedLockouts`).

    A failure locks the subject's row (FOR UPDATE), so replicas counting failures of one key id at once
    are ordered; the rule is `Lockouts.failed`'s, on the database's clock.
    """

    def __init__(self, database: PostgresDatabase) -> None:
        self._db = database

    def failed(self, kind: str, name: str, threshold: int, policy: LockoutPolicy) -> float:
        def work(conn: psycopg.Connection[Any]) -> float:
            with conn.transaction():
                now_row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
                now = float(now_row[0]) if now_row else time.time()
                conn.execute(
                    "INSERT INTO lockouts (kind, name, failures, locked_until, locks, last) "
                    "VALUES (%s, %s, '{}', 0, 0, %s) ON CONFLICT DO NOTHING",
                    (kind, name, now),
                )
                row = conn.execute(
                    "SELECT failures, locked_until, locks, last FROM lockouts WHERE kind = %s AND name = %s FOR UPDATE",
                    (kind, name),
                ).fetchone()
                assert row is not None
                failures, locked_until, locks, last = list(row[0]), float(row[1]), int(row[2]), float(row[3])
                if now - last > policy.window_s + policy.max_lock_s and locked_until <= now:
                    locks = 0  # quiet long enough: a fresh start
                failures = [t for t in failures if t > now - policy.window_s] + [now]
                if len(failures) >= threshold:
                    locked_until = now + min(policy.max_lock_s, policy.first_lock_s * 2**locks)
                    locks += 1
                    failures = []
                conn.execute(
                    "UPDATE lockouts SET failures = %s, locked_until = %s, locks = %s, last = %s "
                    "WHERE kind = %s AND name = %s",
                    (failures, locked_until, locks, now, kind, name),
                )
                return max(0.0, locked_until - now)

        return self._db.run(work, "the key lockouts")

    def forget(self, kind: str, name: str) -> None:
        self._db.run(
            lambda conn: conn.execute("DELETE FROM lockouts WHERE kind = %s AND name = %s", (kind, name)),
            "the key lockouts",
        )

    def locked(self) -> dict[tuple[str, str], float]:
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT kind, name, locked_until - extract(epoch FROM clock_timestamp())::float8 FROM lockouts "
                "WHERE locked_until > extract(epoch FROM clock_timestamp())::float8"
            ).fetchall(),
            "the key lockouts",
        )
        return {(str(kind), str(name)): float(left) for kind, name, left in rows}
