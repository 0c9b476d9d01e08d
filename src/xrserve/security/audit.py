"""The audit trail: one record per request (who, what, outcome, how long), never payloads; tamper-evident.

**Written before the answer.** The middleware writes a request's record when its response
starts, before the first byte leaves: one INSERT in SQLite's WAL mode with
`synchronous=NORMAL`, which is a `write()` into the -wal file (tens of microseconds, no
fsync). Once a client has its answer the record is in the operating system, so a
`kill -9` of the server loses none. fsync happens at checkpoints, which a background
thread runs every second (automatic checkpoints are off, so no request pays for one):
a power loss or an OS crash may lose the records of about the last second, never
corrupt the file.

**Chained.** Every server start begins a chain (a random id). Record n of a chain carries
`hash = SHA-256(hash of record n-1 + canonical JSON of record n)`, with its chain id and
sequence number; record 1 says it starts the chain, and names the last record already
in the file (the previous chain's head), so chains are linked too. Every 100 records, at
least once a second (by the checkpoint thread when requests stop coming) and when the
server stops, the chain's head (sequence number and hash) is written to `audit_anchor`,
itself chained. `verify` recomputes everything: an edited record, a deleted one, or
records cut off before the last anchor are reported with their chain, number and time.

**Refused when it cannot be written.** A failed write (disk full, file-size limit)
raises `AuditUnavailable`; the middleware then answers 503 instead of the response,
and refuses requests until a record can be written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from xrserve.security.files import private_file

log = logging.getLogger("xrserve.audit")

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
    note TEXT,
    chain TEXT,
    seq INTEGER,
    link TEXT,
    hash TEXT
)
"""
_ANCHOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_anchor (
    time REAL NOT NULL,
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    hash TEXT NOT NULL
)
"""
#: columns of the chain, added to an older audit.db when it is opened (its records stay, unchained)
_ADDED_COLUMNS = {"chain": "TEXT", "seq": "INTEGER", "link": "TEXT", "hash": "TEXT"}
_FIELDS = "time, key_id, method, route, model, version, status, latency_ms, client, note"
_INSERT = "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
#: the head is anchored after this many records, or this long after the last anchor, and at close
ANCHOR_EVERY = 100
ANCHOR_INTERVAL_S = 1.0
#: how often the background thread checkpoints the WAL into the database (and fsyncs)
CHECKPOINT_INTERVAL_S = 1.0
#: the `link` of a chain's first record; "start after <chain>#<seq> <hash>" when records came before it
CHAIN_START = "start"


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


class AuditUnavailable(Exception):
    """A record could not be written: the request must not be served."""


#: canonical JSON: compact, ASCII, floats as Python writes them (they survive SQLite's REAL exactly); one
#: encoder made once, as `json.dumps` with arguments would build one per call
_CANONICAL = json.JSONEncoder(separators=(",", ":"))


def _digest(previous: str, fields: list) -> str:
    """SHA-256 over the previous hash and the canonical JSON of the fields."""
    return hashlib.sha256((previous + _CANONICAL.encode(fields)).encode()).hexdigest()


def _record_fields(chain: str, seq: int, link: str | None, values: tuple) -> list:
    when, key_id, method, route, model, version, status, latency_ms, client, note = values
    return [chain, seq, link, float(when), key_id, method, route, model, version, int(status), float(latency_ms),
            client, note]  # fmt: skip


def _anchor_fields(when: float, chain: str, seq: int, head: str) -> list:
    return [float(when), chain, seq, head]


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _connect(path: Path, *, write: bool) -> sqlite3.Connection:
    if write:
        private_file(path)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    if write:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        db.execute(_ANCHOR_SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(audit)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                try:
                    db.execute(f"ALTER TABLE audit ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # another process added it a moment ago
                    if "duplicate column" not in str(exc):
                        raise
    return db


class AuditLog:
    """Writes each record synchronously (one INSERT in WAL mode), chained to the one before.

    Called on the event loop; a lock keeps it safe from other threads. A background thread
    checkpoints the WAL every second on its own connection, so requests never pay an fsync.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path, write=True)
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it, off the request path
        self.chain = secrets.token_hex(8)
        self._seq = 0
        self._head = ""
        self._anchored_seq = 0
        self._anchored_at = time.monotonic()
        self._anchor_hash = ""
        last = self._db.execute("SELECT chain, seq, hash FROM audit WHERE hash IS NOT NULL ORDER BY rowid DESC LIMIT 1")
        row = last.fetchone()
        self._link = CHAIN_START if row is None else f"{CHAIN_START} after {row[0]}#{row[1]} {row[2]}"
        self._lock = threading.Lock()
        #: why the last write failed; None while records are written
        self.failure: str | None = None
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="audit-checkpoint", daemon=True)
        self._checkpointer.start()

    def record(self, record: AuditRecord) -> None:
        """Write the record (in the OS before this returns), or raise AuditUnavailable saying why not."""
        values = (
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
        with self._lock:
            seq = self._seq + 1
            link = self._link if seq == 1 else None
            digest = _digest(self._head, _record_fields(self.chain, seq, link, values))
            now = time.monotonic()
            anchor = seq - self._anchored_seq >= ANCHOR_EVERY or now - self._anchored_at >= ANCHOR_INTERVAL_S
            try:
                if anchor:
                    self._db.execute("BEGIN")
                self._db.execute(_INSERT, (*values, self.chain, seq, link, digest))
                if anchor:
                    anchor_hash = self._write_anchor(record.time, seq, digest)
                    self._db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                self._rollback()
                self._failed(exc)
                raise AuditUnavailable(self.failure) from exc
            self._seq, self._head = seq, digest
            if anchor:
                self._anchored_seq, self._anchored_at, self._anchor_hash = seq, now, anchor_hash
            if self.failure is not None:
                log.warning("the audit trail %s is written again; requests are served", self.path)
                self.failure = None

    def _write_anchor(self, at: float, seq: int, head: str) -> str:
        anchor_hash = _digest(self._anchor_hash, _anchor_fields(at, self.chain, seq, head))
        self._db.execute("INSERT INTO audit_anchor VALUES (?,?,?,?,?)", (at, self.chain, seq, head, anchor_hash))
        return anchor_hash

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _failed(self, exc: BaseException) -> None:
        name = getattr(exc, "sqlite_errorname", None)
        reason = f"{exc} ({name})" if name else str(exc)
        if self.failure is None:
            log.error("the audit trail %s cannot be written: %s; requests are refused until it can", self.path, reason)
        self.failure = reason

    def anchor(self, older_than_s: float = 0.0) -> None:
        """Anchor the chain's head if records came since the last anchor, and it is older than `older_than_s`."""
        with self._lock:
            if self._seq == self._anchored_seq or time.monotonic() - self._anchored_at < older_than_s:
                return
            try:
                anchor_hash = self._write_anchor(time.time(), self._seq, self._head)
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
                return
            self._anchored_seq, self._anchored_at, self._anchor_hash = self._seq, time.monotonic(), anchor_hash

    def _checkpoints(self) -> None:
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                self.anchor(ANCHOR_INTERVAL_S)  # records that came before a quiet spell are anchored too
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # a full disk: the WAL grows until a record fails, which refuses requests
                    pass
        finally:
            db.close()

    def close(self) -> None:
        self.anchor()
        self._stop.set()
        self._checkpointer.join(timeout=5)
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        self._db.close()


def tail(path: Path, limit: int = 20, after: float | None = None) -> list[AuditRecord]:
    """The newest `limit` records (oldest first), or all records after a time."""
    if not path.exists():
        return []
    db = _connect(path, write=False)
    try:
        if after is None:
            query = f"SELECT {_FIELDS} FROM audit ORDER BY rowid DESC LIMIT ?"
            rows = db.execute(query, (limit,)).fetchall()[::-1]
        else:
            rows = db.execute(f"SELECT {_FIELDS} FROM audit WHERE time > ? ORDER BY rowid", (after,)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a server has only just created the file
            return []
        raise
    finally:
        db.close()
    return [AuditRecord(*row) for row in rows]


@dataclass
class Verification:
    """What `verify` found: counts, and the first problem (None: the trail is intact)."""

    records: int = 0
    chains: int = 0
    anchors: int = 0
    unchained: int = 0  # records written before the chain existed (an audit.db from an older xrserve)
    problem: str | None = None
    heads: list[str] = field(default_factory=list)


def _parse_link(link: str | None) -> tuple[str, int, str] | None:
    """The previous chain's head a first record names: (chain, seq, hash), or None when it names none."""
    if not link or not link.startswith(f"{CHAIN_START} after "):
        return None
    named, _, digest = link.removeprefix(f"{CHAIN_START} after ").partition(" ")
    chain, _, seq = named.rpartition("#")
    return (chain, int(seq), digest) if seq.isdigit() else None


def verify(path: Path) -> Verification:
    """Recompute every chain and anchor of the trail at `path`; the first altered or missing record, if any."""
    result = Verification()
    db = _connect(path, write=False)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(audit)")}
        if not columns:
            return result
        if not set(_ADDED_COLUMNS) <= columns:  # never opened by a server that chains
            result.unchained = db.execute("SELECT count(*) FROM audit").fetchone()[0]
            result.records = result.unchained
            return result
        db.execute("BEGIN")  # one snapshot: records and anchors as of the same moment
        rows = db.execute(f"SELECT rowid, {_FIELDS}, chain, seq, link, hash FROM audit ORDER BY rowid").fetchall()
        has_anchors = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_anchor'").fetchone()
        query = "SELECT rowid, time, chain, seq, head, hash FROM audit_anchor ORDER BY rowid"
        anchor_rows = db.execute(query).fetchall() if has_anchors else []
        db.execute("COMMIT")
    finally:
        db.close()
    result.records, result.anchors = len(rows), len(anchor_rows)
    result.problem = _check(rows, anchor_rows, result)
    return result


def _check(rows: list[tuple], anchor_rows: list[tuple], result: Verification) -> str | None:
    chains: dict[str, list[tuple]] = {}
    first_chained: int | None = None
    for row in rows:
        chain = row[11]
        if chain is None:
            if first_chained is not None:
                return (
                    f"the record at row {row[0]} ({when(row[1])}, {row[3]} {row[4]}) has no chain: "
                    "it was inserted, or its chain was erased"
                )
            result.unchained += 1
            continue
        first_chained = row[0] if first_chained is None else first_chained
        chains.setdefault(chain, []).append(row)
    anchors: dict[str, list[tuple]] = {}
    for anchor in anchor_rows:
        anchors.setdefault(anchor[2], []).append(anchor)
    result.chains = len(chains)
    for chain, records in chains.items():
        problem = _check_chain(chain, records, anchors.pop(chain, []), chains)
        if problem:
            return problem
        result.heads.append(f"{chain}#{records[-1][12]}")
    for chain, lost in anchors.items():
        return (
            f"every record of chain {chain} is missing: {len(lost)} anchor(s) say it reached "
            f"#{lost[-1][3]} ({when(lost[-1][1])})"
        )
    return None


def _check_chain(chain: str, records: list[tuple], anchors: list[tuple], chains: dict[str, list[tuple]]) -> str | None:
    records.sort(key=lambda row: (row[12] is None, row[12] or 0))
    head, expected, previous = "", 1, None
    hashes: dict[int, tuple] = {}
    for row in records:
        seq = row[12]
        where = f"record #{seq} of chain {chain} ({when(row[1])}, {row[3]} {row[4]} -> {row[7]})"
        if not isinstance(seq, int):
            return f"the record at row {row[0]} of chain {chain} ({when(row[1])}) has no number: it was altered"
        if seq < expected:
            return f"{where} appears twice: a copy was inserted"
        if seq > expected:
            missing = f"#{expected}" if seq == expected + 1 else f"#{expected} to #{seq - 1}"
            after = f"after #{expected - 1} ({when(previous[1])})" if previous else "at the chain's start"
            return f"record {missing} of chain {chain} is missing: deleted {after}, before #{seq} ({when(row[1])})"
        link = row[13]
        if seq == 1 and not (link or "").startswith(CHAIN_START):
            return f"{where} does not say it starts the chain: it was altered"
        if _digest(head, _record_fields(chain, seq, link, row[1:11])) != row[14]:
            return f"{where} was altered: its contents do not match its hash"
        hashes[seq] = row
        head, expected, previous = row[14], expected + 1, row
    last = expected - 1
    anchor_head = ""
    for anchor in anchors:
        _, at, _, seq, digest, anchor_hash = anchor
        if _digest(anchor_head, _anchor_fields(at, chain, seq, digest)) != anchor_hash:
            return f"the anchor of chain {chain} at #{seq} ({when(at)}) was altered: it does not match its hash"
        anchor_head = anchor_hash
        if seq > last:
            ending = f"its last record is #{last} ({when(previous[1])})" if previous else "none of its records is there"
            return (
                f"records #{last + 1} to #{seq} of chain {chain} are missing: cut off at the end; "
                f"the anchor of {when(at)} says the chain reached #{seq}, but {ending}"
            )
        if hashes[seq][14] != digest:
            return f"record #{seq} of chain {chain} ({when(hashes[seq][1])}) does not match its anchor of {when(at)}"
    named = _parse_link(records[0][13]) if records else None
    if named:
        before, seq, digest = named
        earlier = chains.get(before)
        if earlier is None:
            started = when(records[0][1])
            return f"every record of chain {before} is missing: chain {chain}, started {started}, follows its #{seq}"
        found = next((row for row in earlier if row[12] == seq), None)
        if found is None:
            return (
                f"records of chain {before} up to #{seq} are missing: cut off at the end; chain {chain}, "
                f"started {when(records[0][1])}, says it reached #{seq}, but its last record is #{earlier[-1][12]}"
            )
        if found[14] != digest:
            return f"record #{seq} of chain {before} ({when(found[1])}) does not match what chain {chain} says of it"
    return None
