"""API keys: created and revoked by the CLI, checked by the server, stored hashed in SQLite.

A key reads `xrs_<id>_<secret>`. Only the SHA-256 of the secret is stored: the
secret is 192 random bits, so a fast hash is enough (a password hash would cost
milliseconds on every request for no gain). Scopes are model names, `*` for every
model, and `admin` for everything including key-free admin routes.
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
from pathlib import Path

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
    revoked REAL
)
"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    expires: float | None
    revoked: float | None

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


KEY_PREFIX = "xrs_"


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is meant as an xrserve key (and must be checked), not a placeholder."""
    return token.startswith(KEY_PREFIX)


ANONYMOUS = ApiKey("anonymous", "anonymous (--dev)", (ADMIN,), 0.0, None, None)


class KeyStore:
    """The keys table. Safe to share between threads; the server caches lookups briefly."""

    CACHE_S = 1.0  # a revoked key stops working within this long in a running server

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiKey | None, str]] = {}

    def create(self, name: str, scopes: list[str], expires_in_s: float | None = None) -> tuple[str, ApiKey]:
        """Make a key; returns the secret token (shown once) and its record."""
        if not scopes:
            raise ValueError("a key needs at least one scope: a model name, '*' for all models, or 'admin'")
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(24)
        now = time.time()
        record = ApiKey(key_id, name, tuple(scopes), now, now + expires_in_s if expires_in_s else None, None)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key_id, _digest(secret), name, json.dumps(scopes), now, record.expires),
            )
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id)
            )
        self._cache.pop(key_id, None)
        return cursor.rowcount == 1

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, scopes, created, expires, revoked FROM api_keys ORDER BY created")
            return [_record(row) for row in rows.fetchall()]

    def verify(self, token: str) -> ApiKey:
        """The key a token belongs to; `PermissionError` with the reason if it is not valid."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "xrs":
            raise PermissionError("the API key is malformed; keys look like xrs_<id>_<secret>")
        key_id, secret = parts[1], parts[2]
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.CACHE_S:
            with self._lock:
                row = self._db.execute(
                    "SELECT id, name, scopes, created, expires, revoked, secret_sha256 FROM api_keys WHERE id = ?",
                    (key_id,),
                ).fetchone()
            cached = (now, _record(row[:6]) if row else None, row[6] if row else "")
            self._cache[key_id] = cached
        _, record, digest = cached
        if record is None or not hmac.compare_digest(digest, _digest(secret)):
            raise PermissionError("the API key is not known to this server")
        if record.status != "active":
            raise PermissionError(
                f"the API key {record.id} is {record.status}; create a new one with `xrserve keys create`"
            )
        return record


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(row: tuple) -> ApiKey:
    return ApiKey(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5])
