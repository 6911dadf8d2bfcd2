"""A small SQLite file under the data dir, used from asyncio (history, playlists).

WAL mode, autocommit outside explicit transactions, and one statement or transaction at a
time on a worker thread, so the event loop never waits on the disk. Subclasses name their
schema (``CREATE ... IF NOT EXISTS``), which ``open`` applies.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

T = TypeVar("T")


class SqliteFile:
    SCHEMA: ClassVar[str] = ""
    # PRAGMA synchronous; None keeps SQLite's default (FULL).
    SYNCHRONOUS: ClassVar[str | None] = None
    # Named in the assertion when a method runs before ``open``.
    WHAT: ClassVar[str] = "database"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        if self.SYNCHRONOUS is not None:
            db.execute(f"PRAGMA synchronous={self.SYNCHRONOUS}")
        db.executescript(self.SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        assert self._db is not None, f"{self.WHAT} not opened"
        db = self._db
        async with self._lock:
            return await asyncio.to_thread(lambda: db.execute(sql, args).fetchall())

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction (all of it or nothing survives a crash)."""
        assert self._db is not None, f"{self.WHAT} not opened"
        db = self._db

        def run() -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

        async with self._lock:
            return await asyncio.to_thread(run)
