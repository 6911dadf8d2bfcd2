"""Per-user listening history (plays, skips, favorites) in SQLite under the data dir.

Recorded from playback events on the bus; the taste profiles read it when a profile is
computed without an explicit interaction list. SQLite in both storage modes: history is small,
local to the worker's data dir, and never needed by search.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS plays (
    user_id TEXT NOT NULL, track_id TEXT NOT NULL, ts INTEGER NOT NULL,
    seconds_played REAL NOT NULL, duration REAL NOT NULL, fully_played INTEGER NOT NULL,
    PRIMARY KEY (user_id, track_id, ts)
);
CREATE TABLE IF NOT EXISTS favorites (
    user_id TEXT NOT NULL, track_id TEXT NOT NULL, favorite INTEGER NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, track_id)
);
CREATE TABLE IF NOT EXISTS stale (user_id TEXT PRIMARY KEY, since INTEGER NOT NULL);
"""

# A play shorter than this share of the track (and under 30 s) counts as a skip.
SKIP_FRACTION = 0.3
SKIP_SECONDS = 30.0


@dataclass(slots=True)
class TrackHistory:
    """What one user did with one track: SPEC's aggregate ``UserInteraction``."""

    track_id: str
    play_count: int
    skip_count: int
    is_favorite: bool
    last_played: int


def is_skip(seconds_played: float, duration: float, fully_played: bool) -> bool:
    if fully_played:
        return False
    if duration > 0 and seconds_played >= SKIP_FRACTION * duration:
        return False
    return seconds_played < SKIP_SECONDS or duration <= 0


class ListeningHistory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        assert self._db is not None, "history not opened"
        db = self._db
        async with self._lock:
            return await asyncio.to_thread(lambda: db.execute(sql, args).fetchall())

    async def record_play(
        self,
        user_id: str,
        track_id: str,
        seconds_played: float,
        duration: float,
        fully_played: bool,
        timestamp: int | None = None,
    ) -> None:
        """Idempotent per (user, track, timestamp): a redelivered event changes nothing."""
        await self._run(
            "INSERT OR REPLACE INTO plays VALUES (?, ?, ?, ?, ?, ?)",
            (
                user_id,
                track_id,
                int(timestamp or time.time()),
                seconds_played,
                duration,
                int(fully_played),
            ),
        )
        await self.mark_stale(user_id)

    async def set_favorite(
        self, user_id: str, track_id: str, favorite: bool, timestamp: int | None = None
    ) -> None:
        await self._run(
            "INSERT OR REPLACE INTO favorites VALUES (?, ?, ?, ?)",
            (user_id, track_id, int(favorite), int(timestamp or time.time())),
        )
        await self.mark_stale(user_id)

    async def mark_stale(self, user_id: str) -> None:
        await self._run("INSERT OR IGNORE INTO stale VALUES (?, ?)", (user_id, int(time.time())))

    async def clear_stale(self, user_id: str) -> None:
        await self._run("DELETE FROM stale WHERE user_id = ?", (user_id,))

    async def is_stale(self, user_id: str) -> bool:
        return bool(await self._run("SELECT 1 FROM stale WHERE user_id = ?", (user_id,)))

    async def has_user(self, user_id: str) -> bool:
        rows = await self._run(
            "SELECT 1 FROM plays WHERE user_id = ? UNION SELECT 1 FROM favorites WHERE user_id = ?"
            " LIMIT 1",
            (user_id, user_id),
        )
        return bool(rows)

    async def tracks(self, user_id: str, since: int | None = None) -> list[TrackHistory]:
        """Per-track aggregates for a user (plays since ``since``, favorites always)."""
        plays = await self._run(
            "SELECT track_id, ts, seconds_played, duration, fully_played FROM plays "
            "WHERE user_id = ? AND ts >= ?",
            (user_id, since or 0),
        )
        favs = await self._run(
            "SELECT track_id, favorite, ts FROM favorites WHERE user_id = ?", (user_id,)
        )
        out: dict[str, TrackHistory] = {}
        for track_id, ts, secs, dur, full in plays:
            h = out.setdefault(str(track_id), TrackHistory(str(track_id), 0, 0, False, 0))
            if is_skip(float(secs), float(dur), bool(full)):  # type: ignore[arg-type]
                h.skip_count += 1
            else:
                h.play_count += 1
            h.last_played = max(h.last_played, int(ts))  # type: ignore[call-overload]
        for track_id, fav, ts in favs:
            h = out.setdefault(str(track_id), TrackHistory(str(track_id), 0, 0, False, 0))
            h.is_favorite = bool(fav)
            h.last_played = max(h.last_played, int(ts))  # type: ignore[call-overload]
        return list(out.values())

    async def recent_track_ids(self, user_id: str, since: int) -> set[str]:
        rows = await self._run(
            "SELECT DISTINCT track_id FROM plays WHERE user_id = ? AND ts >= ?", (user_id, since)
        )
        return {str(r[0]) for r in rows}
