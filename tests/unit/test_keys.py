"""The key store on a real SQLite file: a keys.db from before rotation and limits existed keeps working."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from xrserve.security.keys import KeyRejected, KeyStore, Limits

OLD_SCHEMA = """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, name TEXT NOT NULL, scopes TEXT NOT NULL,
    created REAL NOT NULL, expires REAL, revoked REAL
)
"""


def test_an_older_keys_db_gains_the_rotation_columns(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    db = sqlite3.connect(path)
    db.execute(OLD_SCHEMA)
    secret = "s" * 32
    db.execute(
        "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL, NULL)",
        ("0ld0ld00", hashlib.sha256(secret.encode()).hexdigest(), "old", json.dumps(["*"]), time.time()),
    )
    db.commit()
    db.close()
    store = KeyStore(path)
    assert store.verify(f"xrs_0ld0ld00_{secret}").name == "old"
    new, record = store.rotate("0ld0ld00", grace_s=0)
    assert record.rotated is not None and store.verify(new).id == "0ld0ld00"
    with pytest.raises(KeyRejected, match="rotated") as refused:
        store.verify(f"xrs_0ld0ld00_{secret}")
    assert refused.value.key_id == "0ld0ld00"
    assert KeyStore(path).list()[0].rotation.endswith(")")  # opened again: nothing to add
    assert store.verify(new).limits == Limits() and not store.verify(new).limits  # the limit columns: unlimited
    assert store.update_limits("0ld0ld00", rpm=60, max_sessions=2).limits == Limits(rpm=60, max_sessions=2)
    assert KeyStore(path).list()[0].limits.describe() == "rpm 60, max-sessions 2"


def test_limits_are_stored_changed_one_at_a_time_and_never_negative(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    token, record = store.create("x", ["*"], limits=Limits(rpm=5, fps=2))
    assert store.verify(token).limits == Limits(rpm=5, fps=2) == record.limits
    assert store.update_limits(record.id, fps=0, tpm=100).limits == Limits(rpm=5, tpm=100)  # the others stay
    with pytest.raises(ValueError, match="--tpd must be a whole number, 0 or more"):
        store.update_limits(record.id, tpd=-1)
    with pytest.raises(ValueError, match="unknown limits"):
        store.update_limits(record.id, rps=1)
    with pytest.raises(LookupError, match="no key with id 'nope'"):
        store.update_limits("nope", rpm=1)
    assert store.verify(token).limits == Limits(rpm=5, tpm=100)


def test_a_lifetime_must_be_positive(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    for lifetime in (0, -3600):
        with pytest.raises(ValueError, match="must be positive"):
            store.create("x", ["*"], lifetime)
    assert store.list() == []
