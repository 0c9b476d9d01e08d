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
and refuses requests until a record can be written again: each refused request, and the
background thread every second, first probes the trail with a write (`probe`), so the first
request after the disk was freed or the database came back is served.

**Where.** The trail is an `AuditTable`: the SQLite file audit.db in the data directory
(`SqliteAuditTable`, the default, described above) or the PostgreSQL database that every
replica shares (`security/postgres.py`). The chain, the anchors and `verify` are the same for
both; in PostgreSQL each server start is a chain of its own among the others' chains, and its
first record names the newest record in the table when it started. A table whose writes cross
the network (`remote`) is written by a thread of its own: the event loop awaits the record
(`record_async`) instead of blocking on the round trip, and records that arrive meanwhile are
written together, in one statement (one round trip for the lot, still before any of their
answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

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
_INSERT_ANCHOR = "INSERT INTO audit_anchor VALUES (?,?,?,?,?)"
#: the head is anchored after this many records, or this long after the last anchor, and at close
ANCHOR_EVERY = 100
ANCHOR_INTERVAL_S = 1.0
#: how often the background thread checkpoints the WAL into the database (and fsyncs)
CHECKPOINT_INTERVAL_S = 1.0
#: the `link` of a chain's first record; "start after <chain>#<seq> <hash>" when records came before it
CHAIN_START = "start"
#: the most records a remote table's writer thread writes in one statement
MAX_BATCH = 100


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


class AuditTable(Protocol):
    """Where records and anchors are written. Rows: the record's fields (`_FIELDS`) + chain, seq, link, hash;
    anchors: time, chain, seq, head, hash. `AuditLog` calls it under its lock, one call at a time."""

    where: str  # for messages: the file, or the database without its password
    #: what the operator must do when writes fail ("free disk space ..."), for the 503
    remedy: str
    #: what a failed write raises (refused requests, not a crash)
    errors: tuple[type[BaseException], ...]
    #: a write waits on a network round trip: `AuditLog` writes from a thread of its own
    remote: bool

    def last_head(self) -> tuple[str, int, str] | None:
        """The newest chained record already there: (chain, seq, hash)."""
        ...

    def append(self, rows: list[tuple], anchor: tuple | None) -> None:
        """Write the records (and the anchor) all or none; in the database before this returns."""
        ...

    def add_anchor(self, anchor: tuple) -> None: ...

    def checkpoint(self) -> None:
        """Called every second from a background thread (SQLite: fold the WAL into the file)."""
        ...

    def reason(self, exc: BaseException) -> str:
        """Why a write failed, for the 503 and the log."""
        ...

    def close(self) -> None: ...


class AuditSource(Protocol):
    """Reading a trail that is not a SQLite file (`tail` and `verify` take a path or one of these)."""

    def tail_rows(self, limit: int, after: float | None) -> list[tuple]:
        """`_FIELDS` of the newest `limit` records (oldest first), or of all records after a time."""
        ...

    def snapshot(self) -> tuple[list[tuple], list[tuple]]:
        """Every record (id, `_FIELDS`, chain, seq, link, hash) and anchor (id, time, chain, seq, head, hash),
        in the order written, as of one moment."""
        ...


class SqliteAuditTable:
    """audit.db in WAL mode with `synchronous=NORMAL`: a record is a write() into the -wal file, no fsync."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    remote = False
    remedy = "free disk space (or lift the file-size limit) where the server keeps its data"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._db = _connect(path, write=True)
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it, off the request path
        self._checkpoint_db: sqlite3.Connection | None = None

    def last_head(self) -> tuple[str, int, str] | None:
        last = self._db.execute("SELECT chain, seq, hash FROM audit WHERE hash IS NOT NULL ORDER BY rowid DESC LIMIT 1")
        return last.fetchone()

    def append(self, rows: list[tuple], anchor: tuple | None) -> None:
        try:
            if anchor is None and len(rows) == 1:
                self._db.execute(_INSERT, rows[0])
                return
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT, rows)
            if anchor is not None:
                self._db.execute(_INSERT_ANCHOR, anchor)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def add_anchor(self, anchor: tuple) -> None:
        self._db.execute(_INSERT_ANCHOR, anchor)

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def reason(self, exc: BaseException) -> str:
        name = getattr(exc, "sqlite_errorname", None)
        return f"{exc} ({name})" if name else str(exc)

    def checkpoint(self) -> None:
        try:
            if self._checkpoint_db is None:  # a connection of the checkpoint thread's own
                self._checkpoint_db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # a full disk: the WAL grows until a record fails, which refuses requests
            pass

    def close(self) -> None:
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        self._db.close()


class AuditLog:
    """Writes each record synchronously, chained to the one before, into an `AuditTable` (a path: SQLite).

    Called on the event loop; a lock keeps it safe from other threads. A background thread
    anchors a quiet chain and checkpoints SQLite's WAL every second on its own connection, so
    requests never pay an fsync. A remote table is written by a writer thread (`record_async`).
    """

    def __init__(self, table: Path | AuditTable) -> None:
        self.table: AuditTable = SqliteAuditTable(table) if isinstance(table, Path) else table
        self.where = self.table.where
        self.remedy = self.table.remedy
        self.chain = secrets.token_hex(8)
        self._seq = 0
        self._head = ""
        self._anchored_seq = 0
        self._anchored_at = time.monotonic()
        self._anchor_hash = ""
        row = self.table.last_head()
        self._link = CHAIN_START if row is None else f"{CHAIN_START} after {row[0]}#{row[1]} {row[2]}"
        self._lock = threading.Lock()
        #: why the last write failed; None while records are written
        self.failure: str | None = None
        self._stop = threading.Event()
        self._writer = _Writer(self) if self.table.remote else None
        self._probing: asyncio.Future[bool] | None = None  # the probe under way (`probe_async`)
        self._checkpointer = threading.Thread(target=self._checkpoints, name="audit-checkpoint", daemon=True)
        self._checkpointer.start()

    def record(self, record: AuditRecord) -> None:
        """Write the record (in the OS, or the database, before this returns), or raise AuditUnavailable."""
        self._append([_values(record)])

    async def record_async(self, record: AuditRecord) -> None:
        """`record` for the event loop: the same, but a remote table's round trip does not block the loop."""
        if self._writer is None:
            self._append([_values(record)])
        else:
            await asyncio.wrap_future(self._writer.submit(_values(record)))

    def _append(self, batch: list[tuple]) -> None:
        """Chain the records on, write them (with the head's anchor when one is due), all or none."""
        with self._lock:
            seq, head, rows = self._seq, self._head, []
            for values in batch:
                seq += 1
                link = self._link if seq == 1 else None
                head = _digest(head, _record_fields(self.chain, seq, link, values))
                rows.append((*values, self.chain, seq, link, head))
            now = time.monotonic()
            anchor = None
            if seq - self._anchored_seq >= ANCHOR_EVERY or now - self._anchored_at >= ANCHOR_INTERVAL_S:
                anchor = self._anchor_row(batch[-1][0], seq, head)
            try:
                self.table.append(rows, anchor)
            except self.table.errors as exc:
                self._failed(exc)
                raise AuditUnavailable(self.failure) from exc
            self._seq, self._head = seq, head
            if anchor is not None:
                self._anchored_seq, self._anchored_at, self._anchor_hash = seq, now, anchor[4]
            self._written_again()

    def _written_again(self) -> None:
        """A write succeeded: requests are served again (a failure stays only as long as writes fail)."""
        if self.failure is not None:
            log.warning("the audit trail %s is written again; requests are served", self.where)
            self.failure = None

    def _anchor_row(self, at: float, seq: int, head: str) -> tuple:
        return (at, self.chain, seq, head, _digest(self._anchor_hash, _anchor_fields(at, self.chain, seq, head)))

    def _failed(self, exc: BaseException) -> None:
        reason = self.table.reason(exc)
        if self.failure is None:
            log.error("the audit trail %s cannot be written: %s; requests are refused until it can", self.where, reason)
        self.failure = reason

    def anchor(self, older_than_s: float = 0.0) -> None:
        """Anchor the chain's head if records came since the last anchor, and it is older than `older_than_s`."""
        with self._lock:
            if self._seq == self._anchored_seq or time.monotonic() - self._anchored_at < older_than_s:
                return
            self._write_anchor()

    def _write_anchor(self) -> bool:
        """The chain's head as an anchor (under the lock); False when the write failed."""
        anchor = self._anchor_row(time.time(), self._seq, self._head)
        try:
            self.table.add_anchor(anchor)
        except self.table.errors as exc:
            self._failed(exc)
            return False
        self._anchored_seq, self._anchored_at, self._anchor_hash = self._seq, time.monotonic(), anchor[4]
        self._written_again()
        return True

    def probe(self) -> bool:
        """After a failed write: is the trail writable again? True (and `failure` cleared) when it is.

        Requests are refused while `failure` is set, so something must find out that the trail came
        back without waiting on a request's own record, or the first request after a database
        restart would be refused on the failure of minutes ago. The probe is a write that records
        nothing new: the chain's head as an anchor (a repeat of the last anchor is harmless to
        `verify`). Before the chain's first record there is no head, and a read of the newest
        record stands in: optimistic for a full disk, where the next record then fails and is
        refused as before.
        """
        with self._lock:
            if self.failure is None:
                return True
            if self._seq:
                return self._write_anchor()
            try:
                self.table.last_head()
            except self.table.errors as exc:
                self._failed(exc)
                return False
            self._written_again()
            return True

    async def probe_async(self) -> bool:
        """`probe` for the event loop: a remote table's round trip runs in a thread, and requests that
        arrive while one probe is under way wait for its answer rather than each sending one."""
        if self.failure is None:
            return True
        if self._writer is None:
            return self.probe()
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(asyncio.to_thread(self.probe))
        return await asyncio.shield(self._probing)

    def _checkpoints(self) -> None:
        while not self._stop.wait(CHECKPOINT_INTERVAL_S):
            if self.failure is not None:
                self.probe()  # an idle server finds out by itself that the trail is back
            self.anchor(ANCHOR_INTERVAL_S)  # records that came before a quiet spell are anchored too
            self.table.checkpoint()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.anchor()
        self._stop.set()
        self._checkpointer.join(timeout=5)
        self.table.close()


def _values(record: AuditRecord) -> tuple:
    return (
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


class _Writer:
    """The thread that writes a remote table: what queued up while it waited goes in one statement."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._queue: queue.SimpleQueue[tuple[tuple, Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, values: tuple) -> Future[None]:
        future: Future[None] = Future()
        self._queue.put((values, future))
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            # a waiter that was cancelled meanwhile (its server shutting down) still gets its record written
            waiting = [future for _, future in batch if future.set_running_or_notify_cancel()]
            try:
                self._audit._append([values for values, _ in batch])
            except BaseException as exc:  # AuditUnavailable, or a bug: never an answer without its record
                for future in waiting:
                    future.set_exception(exc)
            else:
                for future in waiting:
                    future.set_result(None)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=10)


def tail(path: Path | AuditSource, limit: int = 20, after: float | None = None) -> list[AuditRecord]:
    """The newest `limit` records (oldest first), or all records after a time."""
    if not isinstance(path, Path):
        return [AuditRecord(*row) for row in path.tail_rows(limit, after)]
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


def verify(path: Path | AuditSource) -> Verification:
    """Recompute every chain and anchor of the trail at `path`; the first altered or missing record, if any."""
    result = Verification()
    if not isinstance(path, Path):
        rows, anchor_rows = path.snapshot()
        result.records, result.anchors = len(rows), len(anchor_rows)
        result.problem = _check(rows, anchor_rows, result)
        return result
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
