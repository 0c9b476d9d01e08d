"""The audit trail: one record per request (who, what, outcome, how long), never payloads.

Records are queued in memory and written by a background thread in batches, so the
request path pays for an append, not for a SQLite transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    time REAL NOT NULL,
    key_id TEXT,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT,
    version TEXT,
    status INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    client TEXT,
    note TEXT
)
"""
FLUSH_INTERVAL_S = 0.2


@dataclass(slots=True)
class AuditRecord:
    time: float
    key_id: str | None
    method: str
    route: str
    model: str | None
    version: str | None
    status: int
    latency_ms: float
    client: str | None = None
    note: str | None = None


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute(_SCHEMA)
    db.commit()
    return db


class AuditLog:
    """Appends records to an in-memory list; a thread swaps the list out and writes it every 0.2 s.

    `list.append` is atomic under the GIL, so the request path takes no lock and wakes
    no thread: one wake-up per flush interval, however many requests arrive.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path)
        self._buffer: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, record: AuditRecord) -> None:
        self._buffer.append(
            (
                record.time,
                record.key_id,
                record.method,
                record.route,
                record.model,
                record.version,
                record.status,
                record.latency_ms,
                record.client,
                record.note,
            )
        )

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            self._db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
            self._db.commit()

    def _writer(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self._flush()
        self._flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._db.close()


def tail(path: Path, limit: int = 20, after: float | None = None) -> list[AuditRecord]:
    """The newest `limit` records (oldest first), or all records after a time."""
    if not path.exists():
        return []
    db = _connect(path)
    try:
        if after is None:
            rows = db.execute("SELECT * FROM audit ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()[::-1]
        else:
            rows = db.execute("SELECT * FROM audit WHERE time > ? ORDER BY rowid", (after,)).fetchall()
    finally:
        db.close()
    return [AuditRecord(*row) for row in rows]
