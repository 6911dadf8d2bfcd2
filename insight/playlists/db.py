"""Playlists in SQLite under the data dir (``playlists.db``), in both storage modes.

Playlists are small, local and never searched by vector, like the listening history. One
table of playlists, one of their tracks in order, one of schedules (the cluster refresh).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from insight.sqlite_file import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS playlists (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS playlist_tracks (
    playlist_id TEXT NOT NULL, position INTEGER NOT NULL, track_id TEXT NOT NULL,
    PRIMARY KEY (playlist_id, position)
);
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY, params TEXT NOT NULL, interval_s INTEGER NOT NULL,
    last_run INTEGER NOT NULL
);
"""


@dataclass(slots=True)
class Row:
    playlist_id: str
    kind: str
    name: str
    description: str
    created_at: int
    updated_at: int
    track_count: int


@dataclass(slots=True)
class Schedule:
    name: str
    params: dict[str, Any]
    interval_s: int
    last_run: int


class PlaylistDb(SqliteFile):
    SCHEMA = SCHEMA
    WHAT = "playlist store"

    async def save(
        self, playlist_id: str, kind: str, name: str, description: str, track_ids: list[str]
    ) -> Row:
        now = int(time.time())

        def write(db: sqlite3.Connection) -> Row:
            old = db.execute("SELECT created_at FROM playlists WHERE id=?", (playlist_id,))
            found = old.fetchone()
            created = int(found[0]) if found else now
            db.execute(
                "INSERT OR REPLACE INTO playlists VALUES (?,?,?,?,?,?)",
                (playlist_id, kind, name, description, created, now),
            )
            db.execute("DELETE FROM playlist_tracks WHERE playlist_id=?", (playlist_id,))
            db.executemany(
                "INSERT INTO playlist_tracks VALUES (?,?,?)",
                [(playlist_id, i, t) for i, t in enumerate(track_ids)],
            )
            return Row(playlist_id, kind, name, description, created, now, len(track_ids))

        row: Row = await self._tx(write)
        return row

    async def playlists(self, kind: str | None = None) -> list[Row]:
        sql = (
            "SELECT p.id, p.kind, p.name, p.description, p.created_at, p.updated_at, "
            "(SELECT COUNT(*) FROM playlist_tracks t WHERE t.playlist_id = p.id) "
            "FROM playlists p {} ORDER BY p.kind, p.name, p.id"
        )
        where, args = ("WHERE p.kind=?", (kind,)) if kind else ("", ())
        rows = await self._tx(lambda db: db.execute(sql.format(where), args).fetchall())
        return [Row(*r) for r in rows]

    async def get(self, playlist_id: str) -> tuple[Row, list[str]] | None:
        def read(db: sqlite3.Connection) -> tuple[Row, list[str]] | None:
            p = db.execute(
                "SELECT id, kind, name, description, created_at, updated_at FROM playlists "
                "WHERE id=?",
                (playlist_id,),
            ).fetchone()
            if p is None:
                return None
            tracks = db.execute(
                "SELECT track_id FROM playlist_tracks WHERE playlist_id=? ORDER BY position",
                (playlist_id,),
            ).fetchall()
            pid, kind, name, desc, created, updated = p
            row = Row(pid, kind, name, desc, int(created), int(updated), len(tracks))
            return row, [t[0] for t in tracks]

        found: tuple[Row, list[str]] | None = await self._tx(read)
        return found

    async def members(self, kind: str) -> dict[str, list[str]]:
        """Track ids of every playlist of a kind."""

        def read(db: sqlite3.Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for pid, tid in db.execute(
                "SELECT t.playlist_id, t.track_id FROM playlist_tracks t JOIN playlists p "
                "ON p.id = t.playlist_id WHERE p.kind=? ORDER BY t.playlist_id, t.position",
                (kind,),
            ):
                out.setdefault(pid, []).append(tid)
            for (pid,) in db.execute("SELECT id FROM playlists WHERE kind=?", (kind,)):
                out.setdefault(pid, [])
            return out

        members: dict[str, list[str]] = await self._tx(read)
        return members

    async def delete(self, playlist_id: str) -> bool:
        def drop(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM playlist_tracks WHERE playlist_id=?", (playlist_id,))
            return db.execute("DELETE FROM playlists WHERE id=?", (playlist_id,)).rowcount > 0

        gone: bool = await self._tx(drop)
        return gone

    async def set_schedule(self, name: str, params: dict[str, Any], interval_s: int) -> None:
        now = int(time.time())
        if interval_s <= 0:
            await self._tx(lambda db: db.execute("DELETE FROM schedules WHERE name=?", (name,)))
            return
        await self._tx(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO schedules VALUES (?,?,?,?)",
                (name, json.dumps(params), interval_s, now),
            )
        )

    async def schedule(self, name: str) -> Schedule | None:
        r = await self._tx(
            lambda db: db.execute(
                "SELECT name, params, interval_s, last_run FROM schedules WHERE name=?", (name,)
            ).fetchone()
        )
        return Schedule(r[0], json.loads(r[1]), int(r[2]), int(r[3])) if r else None

    async def mark_run(self, name: str) -> None:
        now = int(time.time())
        await self._tx(
            lambda db: db.execute("UPDATE schedules SET last_run=? WHERE name=?", (now, name))
        )
