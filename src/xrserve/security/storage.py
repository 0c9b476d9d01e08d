"""Where keys and the audit trail live: SQLite files in the data directory, or a PostgreSQL database.

`open_database(None, data_dir)` is the embedded default: keys.db and audit.db in the data
directory, exactly as before. `open_database("postgresql://user@host:5432/db", ...)` is the store
that every server process (every front replica, every node) and the CLI share: a key created,
rotated or revoked by `xrserve keys` on any machine holds on all of them within a second or two
(`KeyStore.CACHE_S`), and all their audit records land in one trail that `xrserve audit verify`
checks. `xrserve serve|keys|audit --database URL` (or `$XRSERVE_DATABASE`) chooses.

Both give the same things: a `KeyStore` over a `KeyTable`, an `AuditLog` over an `AuditTable`,
what `tail` and `verify` read, and where rate-limit buckets are counted (PostgreSQL: in the
database, for every replica; SQLite: in the server process, as before). The PostgreSQL side
(security/postgres.py, psycopg 3 with a connection pool, migrations in security/migrations/) is
imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from xrserve.core.canary import CanaryStore
from xrserve.core.promoted import PromotedStore
from xrserve.security.audit import AuditLog, AuditSource
from xrserve.security.keys import KeyStore
from xrserve.security.limits import SharedBuckets, SharedSessions
from xrserve.security.lockout import SharedLockouts

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreUnreachable(RuntimeError):
    """The database named by --database cannot be reached or set up; the message says which and why."""


class Database(Protocol):
    #: for people: the data directory, or the PostgreSQL database without its password
    where: str
    #: the migrations applied when it was opened (PostgreSQL; always empty for SQLite)
    migrated: list[str]

    def key_store(self) -> KeyStore: ...

    def audit_log(self) -> AuditLog:
        """The trail a server writes (one chain per call: call it once per server process)."""
        ...

    def audit_source(self) -> Path | AuditSource:
        """What `audit.tail` and `audit.verify` read."""
        ...

    def has_audit(self) -> bool:
        """Whether any server has written a trail here yet."""
        ...

    def rate_buckets(self) -> SharedBuckets | None:
        """Where rate-limit buckets are kept for every replica; None: in each server process."""
        ...

    def session_leases(self) -> SharedSessions | None:
        """Where keys' open sessions are counted for every replica; None: in each server process."""
        ...

    def promoted_store(self) -> PromotedStore | None:
        """Where promoted versions are kept for every replica; None: default_versions.json in the data directory."""
        ...

    def canary_store(self) -> CanaryStore | None:
        """Where running canaries are kept for every replica; None: in each server process."""
        ...

    def lockouts(self) -> SharedLockouts | None:
        """Where failed key attempts and locks are counted for every replica; None: in each server process."""
        ...

    def close(self) -> None: ...


class SqliteDatabase:
    """keys.db and audit.db in the data directory (the embedded default)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.where = str(data_dir)
        self.migrated: list[str] = []

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.db"

    @property
    def audit_path(self) -> Path:
        return self.data_dir / "audit.db"

    def key_store(self) -> KeyStore:
        return KeyStore(self.keys_path)

    def audit_log(self) -> AuditLog:
        return AuditLog(self.audit_path)

    def audit_source(self) -> Path:
        return self.audit_path

    def has_audit(self) -> bool:
        return self.audit_path.exists()

    def rate_buckets(self) -> None:
        return None  # one process per data directory: the buckets stay in memory

    def session_leases(self) -> None:
        return None

    def promoted_store(self) -> None:
        return None  # default_versions.json in the data directory

    def canary_store(self) -> None:
        return None

    def lockouts(self) -> None:
        return None

    def close(self) -> None:
        pass


def check_database_url(url: str | None) -> None:
    """ValueError unless `url` is empty (SQLite in the data directory) or a PostgreSQL URL."""
    if url and not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(
            f"--database must be a PostgreSQL URL, postgresql://USER@HOST:PORT/DATABASE (the password "
            f"best in ~/.pgpass or $PGPASSWORD), not {url.split('://')[0]!r}...; leave it out for the SQLite "
            "files in the data directory"
        )


def open_database(url: str | None, data_dir: Path) -> Database:
    """The store `url` names: None or "" is SQLite in `data_dir`; `StoreUnreachable` if PostgreSQL cannot be used."""
    check_database_url(url)
    if not url:
        return SqliteDatabase(data_dir)
    from xrserve.security.postgres import PostgresDatabase  # psycopg only when asked for

    return PostgresDatabase(url)
