"""API keys: created, rotated and revoked by the CLI, checked by the server, stored hashed.

Where they are stored is a `KeyTable`: the embedded SQLite file keys.db in the data directory
(`SqliteKeyTable`, the default) or the PostgreSQL database every replica shares
(`security/postgres.py`, `xrserve serve --database postgresql://...`). `KeyStore` holds what does
not depend on the database: making and checking secrets, rotation, and the short cache.

A key reads `xrs_<id>_<secret>`. Only the SHA-256 of the secret is stored: the
secret is 192 random bits, so a fast hash is enough (a password hash would cost
milliseconds on every request for no gain). Scopes are model names, `*` for every
model, and `admin` for everything including key-free admin routes.

Rotation gives a key id a new secret and keeps the digest of the old one, which works
until the grace period ends and is then refused with a message that says it was rotated.

A key may carry limits (`Limits`: requests, LLM tokens, camera frames, sessions); they are
stored here and enforced by `security/limits.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from xrserve.security.files import private_file

ADMIN = "admin"
ALL_MODELS = "*"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL,
    rotated REAL,
    previous_sha256 TEXT,
    previous_until REAL,
    rpm INTEGER NOT NULL DEFAULT 0,
    tpm INTEGER NOT NULL DEFAULT 0,
    tpd INTEGER NOT NULL DEFAULT 0,
    fps INTEGER NOT NULL DEFAULT 0,
    max_sessions INTEGER NOT NULL DEFAULT 0
)
"""
#: columns added after the first release, added to an older keys.db when it is opened
_ADDED_COLUMNS = {
    "rotated": "REAL",
    "previous_sha256": "TEXT",
    "previous_until": "REAL",
    **{name: "INTEGER NOT NULL DEFAULT 0" for name in ("rpm", "tpm", "tpd", "fps", "max_sessions")},
}
_COLUMNS = "id, name, scopes, created, expires, revoked, rotated, previous_until, rpm, tpm, tpd, fps, max_sessions"
_RECORD_COLUMNS = len(_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key may use; 0 is unlimited. Enforced per server process by `security/limits.py`."""

    rpm: int = 0  # requests per minute (HTTP requests and session messages), as a bucket of this size
    tpm: int = 0  # LLM tokens (prompt + completion) per minute
    tpd: int = 0  # LLM tokens per day
    fps: int = 0  # camera frames per second over all the key's camera streams
    max_sessions: int = 0  # /v1/session connections open at once

    OPTIONS = {"rpm": "--rpm", "tpm": "--tpm", "tpd": "--tpd", "fps": "--fps", "max_sessions": "--max-sessions"}

    def __post_init__(self) -> None:
        for name, option in self.OPTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{option} must be a whole number, 0 or more (0 = unlimited), not {value!r}")

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.OPTIONS)

    def describe(self) -> str:
        """For `keys list`: "rpm 60, tpm 1000", or "-" without limits."""
        shown = [f"{option[2:]} {getattr(self, name)}" for name, option in self.OPTIONS.items() if getattr(self, name)]
        return ", ".join(shown) or "-"


NO_LIMITS = Limits()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    expires: float | None
    revoked: float | None
    rotated: float | None = None  # when the secret was last replaced by `xrserve keys rotate`
    previous_until: float | None = None  # the old secret works until then
    limits: Limits = NO_LIMITS

    def allows(self, model: str | None = None, *, admin: bool = False) -> bool:
        if ADMIN in self.scopes:
            return True
        if admin:
            return False
        return model is None or ALL_MODELS in self.scopes or model in self.scopes

    @property
    def status(self) -> str:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires <= time.time():
            return "expired"
        return "active"

    @property
    def rotation(self) -> str:
        """How the key's rotation stands, for `keys list`: "-" if it never was rotated."""
        if self.rotated is None:
            return "-"
        grace = self.previous_until or self.rotated
        state = "works until" if grace > time.time() else "ended"
        return f"{_when(self.rotated, zone=False)} (old secret {state} {_when(grace, zone=False)})"


KEY_PREFIX = "xrs_"


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is meant as an xrserve key (and must be checked), not a placeholder."""
    return token.startswith(KEY_PREFIX)


def claimed_key_id(token: str) -> str | None:
    """The key id a token names (`xrs_<id>_<secret>`), whether or not the key exists; None if malformed."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "xrs" or not parts[1] or not parts[2] or len(parts[1]) > 64:
        return None
    return parts[1]


class KeyRejected(PermissionError):
    """A token that is not a valid key: `message` for the client, `reason` for the audit trail.

    The client is never told whether a key id exists: an unknown id and a wrong secret read
    the same to it; the audit note tells them apart.
    """

    def __init__(self, message: str, reason: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.key_id = key_id


def _when(timestamp: float, *, zone: bool = True) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S" + (" %Z" if zone else ""))


ANONYMOUS = ApiKey("anonymous", "anonymous (--dev)", (ADMIN,), 0.0, None, None)


class KeyTable(Protocol):
    """Where keys are stored: rows of `_COLUMNS` (a record), and the digests of a key's secrets.

    Each change is atomic, and every method is safe to call from any thread. A table that cannot be
    reached raises `xrserve.core.errors.Unavailable` (a 503: requests are refused, never let in unchecked).
    """

    where: str  # for messages: the file, or the database without its password

    def insert(self, key_id: str, digest: str, name: str, scopes: str, created: float, expires: float | None,
               limits: tuple[int, ...]) -> None: ...  # fmt: skip

    def rotate(self, key_id: str, digest: str, now: float, until: float) -> tuple[bool, tuple | None]:
        """Give an active key a new digest, keeping the old one until `until`; (changed, the key's row)."""
        ...

    def update_limits(self, key_id: str, changes: dict[str, int]) -> tuple | None: ...

    def revoke(self, key_id: str, now: float) -> bool: ...

    def records(self) -> list[tuple]:
        """Every key's row, oldest first."""
        ...

    def credentials(self, key_id: str) -> tuple | None:
        """The key's row followed by the digest of its secret and that of its previous secret."""
        ...

    def close(self) -> None: ...


class SqliteKeyTable:
    """keys.db: one SQLite connection (WAL mode) shared by the threads under a lock."""

    def __init__(self, path: Path) -> None:
        private_file(path)  # 0600 in a 0700 directory: the digests are nobody else's business
        self.where = str(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(api_keys)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                try:
                    self._db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it a moment ago
                    if "duplicate column" not in str(exc):
                        raise
        self._lock = threading.Lock()

    def insert(self, key_id: str, digest: str, name: str, scopes: str, created: float, expires: float | None,
               limits: tuple[int, ...]) -> None:  # fmt: skip
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, secret_sha256, name, scopes, created, expires, rpm, tpm, tpd, fps, "
                "max_sessions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key_id, digest, name, scopes, created, expires, *limits),
            )

    def rotate(self, key_id: str, digest: str, now: float, until: float) -> tuple[bool, tuple | None]:
        with self._lock:
            changed = self._db.execute(
                "UPDATE api_keys SET previous_sha256 = secret_sha256, secret_sha256 = ?, rotated = ?, "
                "previous_until = ? WHERE id = ? AND revoked IS NULL AND (expires IS NULL OR expires > ?)",
                (digest, now, until, key_id, now),
            ).rowcount
            row = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return bool(changed), row

    def update_limits(self, key_id: str, changes: dict[str, int]) -> tuple | None:
        with self._lock:
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                self._db.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?", (*changes.values(), key_id))
            return self._db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()

    def revoke(self, key_id: str, now: float) -> bool:
        with self._lock:
            cursor = self._db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, key_id))
        return cursor.rowcount == 1

    def records(self) -> list[tuple]:
        with self._lock:
            return self._db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created").fetchall()

    def credentials(self, key_id: str) -> tuple | None:
        with self._lock:
            return self._db.execute(
                f"SELECT {_COLUMNS}, secret_sha256, previous_sha256 FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class KeyStore:
    """Keys in a `KeyTable` (a path: the SQLite file). Safe to share between threads; lookups are cached briefly.

    Every server process sharing a table sees a revocation, rotation or limit change within `CACHE_S`:
    a key's row is read again once its cached copy is older than that.
    """

    CACHE_S = 1.0  # a revoked key stops working within this long in a running server

    def __init__(self, table: Path | KeyTable) -> None:
        self.table: KeyTable = SqliteKeyTable(table) if isinstance(table, Path) else table
        self._cache: dict[str, _Cached] = {}

    def create(
        self, name: str, scopes: list[str], expires_in_s: float | None = None, limits: Limits = NO_LIMITS
    ) -> tuple[str, ApiKey]:
        """Make a key; returns the secret token (shown once) and its record."""
        if not scopes:
            raise ValueError("a key needs at least one scope: a model name, '*' for all models, or 'admin'")
        if expires_in_s is not None and not expires_in_s > 0:
            raise ValueError(
                f"a key's lifetime must be positive, not {expires_in_s:g} s; leave --expires-in out for a key "
                "that never expires"
            )
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(24)
        now = time.time()
        expires = now + expires_in_s if expires_in_s else None
        record = ApiKey(key_id, name, tuple(scopes), now, expires, None, limits=limits)
        self.table.insert(key_id, _digest(secret), name, json.dumps(scopes), now, expires, _limit_values(limits))
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def rotate(self, key_id: str, grace_s: float) -> tuple[str, ApiKey]:
        """A new secret for the key id, same name, scopes and expiry; the old secret works `grace_s` more.

        Only the newest old secret is kept: rotating again within the grace ends the one before at once.
        `LookupError` if there is no active key with that id.
        """
        if not grace_s >= 0:
            raise ValueError(f"the grace period cannot be negative ({grace_s:g} s); 0 ends the old secret at once")
        secret = secrets.token_urlsafe(24)
        now = time.time()
        changed, row = self.table.rotate(key_id, _digest(secret), now, now + grace_s)
        self._cache.pop(key_id, None)
        if not changed or row is None:
            why = "there is no key" if row is None else f"the key is {_record(row).status}: there is no active key"
            raise LookupError(f"{why} with id '{key_id}' (see `xrserve keys list`)")
        return f"{KEY_PREFIX}{key_id}_{secret}", _record(row)

    def update_limits(self, key_id: str, **changes: int) -> ApiKey:
        """Change some of a key's limits (`rpm=60`, `fps=0` for unlimited, ...); the others stay.

        A running server sees the change within `CACHE_S`. `LookupError` if there is no such key,
        `ValueError` for a negative limit or an unknown name.
        """
        unknown = sorted(set(changes) - set(Limits.OPTIONS))
        if unknown:
            raise ValueError(f"unknown limits {unknown}; the limits are {sorted(Limits.OPTIONS)}")
        Limits(**changes)  # the same checks as a whole set (a negative limit is refused)
        row = self.table.update_limits(key_id, changes)
        self._cache.pop(key_id, None)
        if row is None:
            raise LookupError(f"there is no key with id '{key_id}' (see `xrserve keys list`)")
        return _record(row)

    def current(self, key_id: str) -> ApiKey | None:
        """The key's record as the server knows it now (cached for `CACHE_S`): limits changed meanwhile."""
        return self._lookup(key_id)[0].record

    def revoke(self, key_id: str) -> bool:
        revoked = self.table.revoke(key_id, time.time())
        self._cache.pop(key_id, None)
        return revoked

    def list(self) -> list[ApiKey]:
        return [_record(row) for row in self.table.records()]

    def close(self) -> None:
        self.table.close()

    def verify(self, token: str) -> ApiKey:
        """The key a token belongs to; `KeyRejected` (a `PermissionError`) with the reason if it is not valid."""
        return self.authenticate(token)[0]

    def authenticate(self, token: str) -> tuple[ApiKey, str | None]:
        """The key a token belongs to and a note for the audit trail (the old secret of a rotated key).

        Lookups are cached for `CACHE_S`; a secret that matches neither cached digest is looked up
        again at once, so a key rotated a moment ago works with its new secret straight away.
        """
        key_id = claimed_key_id(token)
        if key_id is None:
            raise KeyRejected("the API key is malformed; keys look like xrs_<id>_<secret>", "malformed key")
        digest = _digest(token.split("_", 2)[2])
        cached, fresh = self._lookup(key_id)
        if not cached.matches(digest) and not fresh:
            cached, _ = self._lookup(key_id, refresh=True)
        record = cached.record
        if record is None:
            raise KeyRejected("the API key is not known to this server", "unknown key id", key_id)
        old = not hmac.compare_digest(cached.digest, digest)
        if old and not (cached.previous and hmac.compare_digest(cached.previous, digest)):
            raise KeyRejected("the API key is not known to this server", "wrong secret", key_id)
        if record.status != "active":
            raise KeyRejected(
                f"the API key {record.id} is {record.status}; create a new one with `xrserve keys create`",
                record.status,
                key_id,
            )
        if not old:
            return record, None
        until = record.previous_until or 0.0
        if until <= time.time():
            raise KeyRejected(
                f"the API key {record.id} was rotated at {_when(record.rotated or until)} and this, its old "
                f"secret, stopped working at {_when(until)}; use the new key that `xrserve keys rotate` printed",
                "old secret of a rotated key, after its grace period",
                key_id,
            )
        return record, f"old secret of a rotated key (works until {_when(until)})"

    def _lookup(self, key_id: str, *, refresh: bool = False) -> tuple[_Cached, bool]:
        """The cached row of a key id (record None: no such key), and whether it was read just now."""
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if not refresh and cached is not None and now - cached.loaded <= self.CACHE_S:
            return cached, False
        row = self.table.credentials(key_id)
        n = _RECORD_COLUMNS
        cached = _Cached(now, None, "", None) if row is None else _Cached(now, _record(row[:n]), row[n], row[n + 1])
        if row is not None or len(self._cache) < 10_000:  # ids that do not exist: cached only while few
            self._cache[key_id] = cached
        return cached, True


@dataclass(frozen=True, slots=True)
class _Cached:
    loaded: float  # time.monotonic()
    record: ApiKey | None
    digest: str
    previous: str | None  # the digest of the secret before the last rotation

    def matches(self, digest: str) -> bool:
        return hmac.compare_digest(self.digest, digest) or bool(
            self.previous and hmac.compare_digest(self.previous, digest)
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _limit_values(limits: Limits) -> tuple[int, ...]:
    return tuple(getattr(limits, name) for name in Limits.OPTIONS)


def _record(row: tuple) -> ApiKey:
    limits = Limits(*row[8:13]) if any(row[8:13]) else NO_LIMITS
    return ApiKey(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5], row[6], row[7], limits)
