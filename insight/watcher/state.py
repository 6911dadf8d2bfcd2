"""What the watcher knows about each file, in SQLite (WAL) under the data dir."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DONE, FAILED, PENDING = "done", "failed", "pending"

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    track_id TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT,
    status TEXT NOT NULL,
    error TEXT,
    mode TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_track ON files(track_id);
CREATE INDEX IF NOT EXISTS files_hash ON files(size, content_hash);
CREATE TABLE IF NOT EXISTS folders (
    path TEXT PRIMARY KEY,
    recursive INTEGER NOT NULL DEFAULT 1,
    label TEXT,
    enabled INTEGER NOT NULL DEFAULT 1
);
"""


@dataclass
class FileRow:
    path: str
    folder: str
    track_id: str | None
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    error: str | None
    mode: str | None


class WatcherState:
    """Small synchronous store; every call is one short transaction (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[FileRow]:
        with self._lock:
            cur = self._db.execute(
                "SELECT path, folder, track_id, size, mtime_ns, content_hash, status, error, mode "
                "FROM files " + sql,
                args,
            )
            return [FileRow(*r) for r in cur.fetchall()]

    def get(self, path: str) -> FileRow | None:
        rows = self._rows("WHERE path = ?", (path,))
        return rows[0] if rows else None

    def by_track(self, track_id: str) -> list[FileRow]:
        return self._rows("WHERE track_id = ?", (track_id,))

    def by_hash(self, size: int, content_hash: str) -> list[FileRow]:
        return self._rows("WHERE size = ? AND content_hash = ?", (size, content_hash))

    def under(self, folder: str) -> list[FileRow]:
        prefix = folder.rstrip("/") + "/"
        return self._rows("WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))

    def all(self) -> list[FileRow]:
        return self._rows("")

    def failed(self, limit: int) -> list[FileRow]:
        """The ``limit`` most recent failures, newest first."""
        return self._rows("WHERE status = ? ORDER BY updated_at DESC LIMIT ?", (FAILED, limit))

    def put(self, row: FileRow) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files (path, folder, track_id, size, mtime_ns, "
                "content_hash, status, error, mode, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    row.path,
                    row.folder,
                    row.track_id,
                    row.size,
                    row.mtime_ns,
                    row.content_hash,
                    row.status,
                    row.error,
                    row.mode,
                    time.time(),
                ),
            )

    def move(self, old: str, new: str, folder: str, mtime_ns: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE path = ?", (new,))
            self._db.execute(
                "UPDATE files SET path = ?, folder = ?, mtime_ns = ?, updated_at = ? "
                "WHERE path = ?",
                (new, folder, mtime_ns, time.time(), old),
            )

    def delete(self, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))

    def counts(self) -> dict[str, int]:
        with self._lock:
            cur = self._db.execute("SELECT status, count(*) FROM files GROUP BY status")
            return {str(s): int(n) for s, n in cur.fetchall()}

    # --- folders added at run time ------------------------------------------------------

    def folders(self) -> list[tuple[str, bool, str | None, bool]]:
        with self._lock:
            cur = self._db.execute("SELECT path, recursive, label, enabled FROM folders")
            return [(p, bool(r), lbl, bool(e)) for p, r, lbl, e in cur.fetchall()]

    def add_folder(self, path: str, recursive: bool, label: str | None, enabled: bool) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO folders (path, recursive, label, enabled) VALUES (?,?,?,?)",
                (path, int(recursive), label, int(enabled)),
            )

    def remove_folder(self, path: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM folders WHERE path = ?", (path,))
