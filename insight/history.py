"""Per-user listening history (plays, skips, favorites) in SQLite under the data dir.

Recorded from playback events on the bus; the taste profiles read it when a profile is
computed without an explicit interaction list. SQLite in both storage modes: history is small,
local to the worker's data dir, and never needed by search.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from insight.ingest import queue_store
from insight.ingest.listens import IDLE_S, Listen, Report, fold
from insight.ingest.queues import QueueUpdate, Segment
from insight.sqlite_file import SqliteFile

T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS listens (
    user_id TEXT PRIMARY KEY, track_id TEXT NOT NULL, started INTEGER NOT NULL,
    last_ts REAL NOT NULL, position REAL NOT NULL, duration REAL NOT NULL,
    fully_played INTEGER NOT NULL, playing INTEGER NOT NULL, booked INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
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


class ListeningHistory(SqliteFile):
    SCHEMA = SCHEMA + queue_store.QUEUE_SCHEMA
    SYNCHRONOUS = "NORMAL"
    WHAT = "history"

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

    # --- playback events, exactly once per stream sequence ------------------------------

    async def apply_event(
        self, consumer: str, seq: int, apply: Callable[[sqlite3.Connection], None]
    ) -> bool:
        """Apply one playback event unless ``seq`` was applied already (a redelivery after a
        crash between the write and the ack); the write and the sequence commit together.
        ``consumer`` names the consumer and the user: one user's events apply in order."""

        def run(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT seq FROM applied WHERE consumer = ?", (consumer,)).fetchone()
            if row is not None and int(row[0]) >= seq:
                return False
            apply(db)
            db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (consumer, seq))
            return True

        return await self._tx(run)

    @staticmethod
    def report_writer(r: Report, idle_s: float = IDLE_S) -> Callable[[sqlite3.Connection], None]:
        """Fold one progress report into its queue's listen (insight.ingest.queues), or without
        queue events into the user's open listen; book the listens it ends."""

        def write(db: sqlite3.Connection) -> None:
            segments = queue_store.apply_report(db, r)
            if segments is not None:
                _book_segments(db, segments)
                return
            if (
                not r.is_playing
                and db.execute(
                    "SELECT 1 FROM listens WHERE track_id = ? AND position = ? AND booked = 1",
                    (r.track_id, r.position),
                ).fetchone()
            ):
                return  # a re-report of a booked listen (MA names the queue's new user)
            row = db.execute(
                "SELECT track_id, started, last_ts, position, duration, fully_played, playing, "
                "booked FROM listens WHERE user_id = ?",
                (r.user_id,),
            ).fetchone()
            open_ = (
                Listen(row[0], int(row[1]), *row[2:5], *(bool(v) for v in row[5:])) if row else None
            )
            book, current = fold(open_, r, idle_s)
            for listen in book:
                _book(db, r.user_id, listen)
            db.execute(
                "INSERT OR REPLACE INTO listens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.user_id,
                    current.track_id,
                    current.started,
                    current.last_ts,
                    current.position,
                    current.duration,
                    int(current.fully_played),
                    int(current.playing),
                    int(current.booked),
                ),
            )

        return write

    @staticmethod
    def queue_writer(u: QueueUpdate) -> Callable[[sqlite3.Connection], None]:
        """Apply one queue update; book the listens it ends (next item, wrap, stop)."""

        def write(db: sqlite3.Connection) -> None:
            _book_segments(db, queue_store.apply_queue(db, u))

        return write

    @staticmethod
    def favorite_writer(
        user_id: str, track_ids: list[str], favorite: bool, timestamp: float, exact: bool = False
    ) -> Callable[[sqlite3.Connection], None]:
        """Set favorites; ``exact``: ``track_ids`` is the user's whole favorite set. Only what
        changes is written (a backfill's unchanged set leaves the user's profiles fresh)."""

        def write(db: sqlite3.Connection) -> None:
            rows = db.execute(
                "SELECT track_id FROM favorites WHERE user_id = ? AND favorite = 1", (user_id,)
            ).fetchall()
            now_on = {str(r[0]) for r in rows}
            wanted = set(track_ids)
            if exact:
                changes = [(t, False) for t in now_on - wanted] + [
                    (t, True) for t in wanted - now_on
                ]
            else:
                changes = [(t, favorite) for t in wanted if (t in now_on) != favorite]
            if not changes:
                return
            db.executemany(
                "INSERT OR REPLACE INTO favorites VALUES (?, ?, ?, ?)",
                [(user_id, t, int(on), int(timestamp)) for t, on in sorted(changes)],
            )
            db.execute("INSERT OR IGNORE INTO stale VALUES (?, ?)", (user_id, int(time.time())))

        return write

    async def sweep(self, now: float | None = None, idle_s: float = IDLE_S) -> int:
        """Book the open listens nothing was reported for in ``idle_s`` (stopped, gone)."""
        cutoff = (now if now is not None else time.time()) - idle_s

        def run(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "SELECT user_id, track_id, started, last_ts, position, duration, fully_played, "
                "playing, booked FROM listens WHERE last_ts < ?",
                (cutoff,),
            ).fetchall()
            for row in rows:
                if not row[8]:
                    listen = Listen(row[1], int(row[2]), *row[3:6], *(bool(v) for v in row[6:]))
                    _book(db, str(row[0]), listen)
            db.execute("DELETE FROM listens WHERE last_ts < ?", (cutoff,))
            segments = queue_store.sweep(db, cutoff)
            _book_segments(db, segments)
            return len(rows) + len(segments)

        return await self._tx(run)

    # --- reading ---------------------------------------------------------------------------

    async def plays(self, user_id: str, since: int = 0, limit: int = 1000) -> list[Play]:
        """A user's plays and skips, newest first."""
        rows = await self._run(
            "SELECT track_id, ts, seconds_played, duration, fully_played FROM plays "
            "WHERE user_id = ? AND ts >= ? ORDER BY ts DESC, track_id LIMIT ?",
            (user_id, since, limit),
        )
        return [_play(row) for row in rows]

    async def favorite_ids(self, user_id: str) -> list[str]:
        rows = await self._run(
            "SELECT track_id FROM favorites WHERE user_id = ? AND favorite = 1 ORDER BY track_id",
            (user_id,),
        )
        return [str(r[0]) for r in rows]

    async def open_listen(self, user_id: str) -> Listen | None:
        """The user's listen not booked yet: on a queue, else from reports alone."""
        on_queue = await self._tx(lambda db: queue_store.open_segment(db, user_id))
        if on_queue is not None:
            return on_queue
        rows = await self._run(
            "SELECT track_id, started, last_ts, position, duration, fully_played, playing, "
            "booked FROM listens WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return Listen(str(row[0]), int(row[1]), *row[2:5], *(bool(v) for v in row[5:]))  # type: ignore[arg-type, call-overload]


@dataclass(slots=True)
class Play:
    track_id: str
    ts: int
    seconds_played: float
    duration: float
    fully_played: bool
    skipped: bool


def _play(row: Any) -> Play:
    track_id, ts, secs, dur, full = row
    secs, dur, full = float(secs), float(dur), bool(full)
    return Play(str(track_id), int(ts), secs, dur, full, is_skip(secs, dur, full))


def _book_segments(db: sqlite3.Connection, segments: list[Segment]) -> None:
    for seg in segments:
        if seg.unbook_user:  # booked to the queue's previous user before its report came
            db.execute(
                "DELETE FROM plays WHERE user_id = ? AND track_id = ? AND ts = ?",
                (seg.unbook_user, seg.track_id, seg.started),
            )
        _book(db, seg.user_id, queue_store.as_listen(seg))


def _book(db: sqlite3.Connection, user_id: str, listen: Listen) -> None:
    """One listen as one play, keyed by its start: re-booking the same listen replaces it."""
    db.execute(
        "INSERT OR REPLACE INTO plays VALUES (?, ?, ?, ?, ?, ?)",
        (
            user_id,
            listen.track_id,
            listen.started,
            listen.position,
            listen.duration,
            int(listen.fully_played),
        ),
    )
    db.execute("INSERT OR IGNORE INTO stale VALUES (?, ?)", (user_id, int(time.time())))
