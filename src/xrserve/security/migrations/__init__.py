"""Schema migrations for the shared PostgreSQL store: numbered SQL files, each applied once, in a transaction.

The files live in `postgres/` beside this module and are named `NNNN_what.sql` (`0001_api_keys.sql`).
`migrate` applies, in order, every file whose number is not yet in the `schema_migrations` table,
each in its own transaction together with its row there (a file that fails leaves nothing behind),
and records the SHA-256 of each file: an applied file that was edited afterwards stops the start
with a message rather than leaving replicas on different schemas. Every server and every CLI
command that opens the database calls it; a session-level advisory lock makes replicas that start
at the same moment apply each file once (the others wait, then find it applied). A migration is
never edited or renumbered once released: a change is a new file.

Why not Alembic: it works through SQLAlchemy, which nothing else in xrserve uses; for a handful of
tables written with plain SQL, a table of applied numbers and a loop over files is all that is
needed, and the SQL is exactly what runs. The embedded SQLite files keep their own way of growing
(`CREATE TABLE IF NOT EXISTS` and added columns, in security/keys.py and security/audit.py), so an
existing data directory opens exactly as before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

POSTGRES = Path(__file__).parent / "postgres"
#: the advisory lock held while migrating (any constant; "xrserve" in ASCII, as a number)
LOCK_ID = int.from_bytes(b"xrserve", "big")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def migrations(directory: Path = POSTGRES) -> list[Migration]:
    """The migration files in order; a misnamed file or a number used twice is an error, not skipped."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migration files are numbered {version:04d}: {found[version].label} and {path.name}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[version] for version in sorted(found)]


def migrate(conn: psycopg.Connection, directory: Path = POSTGRES) -> list[str]:
    """Apply the migrations `conn`'s database lacks; the labels of those applied now (empty: up to date).

    `conn` must be in autocommit mode (each migration gets its own transaction here).
    """
    wanted = migrations(directory)
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    try:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            conn.execute(_TABLE)  # DDL only when needed: a role without CREATE rights opens a migrated database
        applied = {
            row[0]: (row[1], row[2]) for row in conn.execute("SELECT version, name, sha256 FROM schema_migrations")
        }
        done: list[str] = []
        for migration in wanted:
            if migration.version in applied:
                name, digest = applied[migration.version]
                if digest != migration.sha256:
                    raise RuntimeError(
                        f"migration {migration.label} was changed after it was applied to this database "
                        f"(as {migration.version:04d}_{name}); migrations are never edited, a change is a new file"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())  # bytes: several statements, no parameters
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.sha256),
                )
            done.append(migration.label)
        newer = sorted(set(applied) - {m.version for m in wanted})
        if newer:
            raise RuntimeError(
                f"the database has migration(s) {', '.join(f'{v:04d}' for v in newer)} that this xrserve does not "
                "know: it was upgraded by a newer xrserve; run that version"
            )
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
