"""The key store on a real SQLite file: a keys.db from before rotation existed keeps working."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from xrserve.security.keys import KeyRejected, KeyStore

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


def test_a_lifetime_must_be_positive(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    for lifetime in (0, -3600):
        with pytest.raises(ValueError, match="must be positive"):
            store.create("x", ["*"], lifetime)
    assert store.list() == []
