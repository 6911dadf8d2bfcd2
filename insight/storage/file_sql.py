"""The SQLite side of the file store: schema, statements and transactions.

SQLite is the truth of the file store (see ``file.py``): per collection it holds key → label,
the JSON payload, the float32 vector and ``seq`` of the row's last write; ``meta`` holds the
last ``seq`` per collection, so a delete of the newest row does not reuse its number.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

DB_NAME = "insight.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    label INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE UNIQUE INDEX IF NOT EXISTS points_label ON points (collection, label);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""
_UPSERT = """
INSERT INTO points (collection, key, label, seq, payload, vector) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (collection, key) DO UPDATE SET
    label = excluded.label, seq = excluded.seq, payload = excluded.payload,
    vector = excluded.vector
"""
_SET_META = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # 16 KiB pages hold 7 rows of a 512-d vector (4 KiB pages: one, half empty); only
    # takes effect when the file is created.
    db.execute("PRAGMA page_size=16384")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(_SCHEMA)
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def read_rows(db: sqlite3.Connection, name: str) -> list[Any]:
    """Every row of a collection: (key, label, seq, payload JSON, vector bytes)."""
    return db.execute(
        "SELECT key, label, seq, payload, vector FROM points WHERE collection = ?", (name,)
    ).fetchall()


def read_seq(db: sqlite3.Connection, name: str) -> int:
    """The last write sequence recorded for a collection (0 when none)."""
    meta = db.execute("SELECT v FROM meta WHERE k = ?", (f"seq:{name}",)).fetchone()
    return int(meta[0]) if meta else 0


def write_rows(db: sqlite3.Connection, name: str, rows: list[tuple[Any, ...]], seq: int) -> None:
    """Upsert rows (collection, key, label, seq, payload, vector) and the collection's seq."""
    with transaction(db):
        db.executemany(_UPSERT, rows)
        db.execute(_SET_META, (f"seq:{name}", seq))


def delete_keys(db: sqlite3.Connection, name: str, keys: list[str]) -> None:
    with transaction(db):
        db.executemany(
            "DELETE FROM points WHERE collection = ? AND key = ?", [(name, k) for k in keys]
        )


def read_vectors(db: sqlite3.Connection, name: str) -> dict[str, tuple[int, np.ndarray]]:
    """key → (label, vector) of a collection, for ``verify``."""
    return {
        key: (label, np.frombuffer(blob, np.float32))
        for key, label, blob in db.execute(
            "SELECT key, label, vector FROM points WHERE collection = ?", (name,)
        )
    }
