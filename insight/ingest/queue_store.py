"""Queue state (insight.ingest.queues) in the listening history's SQLite, one row per queue.

Used inside ``ListeningHistory`` transactions: each function takes the open connection and
returns the segments to book as plays (the history books them, keyed like every play).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace

from insight.ingest.listens import Listen, Report
from insight.ingest.queues import (
    IDLE,
    QueueState,
    QueueUpdate,
    Segment,
    advance,
    match,
    on_queue,
    on_report,
)

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    queue_id TEXT PRIMARY KEY, state TEXT NOT NULL, last_ts REAL NOT NULL
);
"""


def _segment(raw: dict[str, object] | None) -> Segment | None:
    return Segment(**raw) if raw else None  # type: ignore[arg-type]


def _load(row: tuple[object, ...]) -> QueueState:
    raw = json.loads(str(row[0]))
    return QueueState(raw["queue_id"], raw["user_id"], _segment(raw["cur"]), _segment(raw["prev"]))


def load_all(db: sqlite3.Connection) -> list[QueueState]:
    rows = db.execute("SELECT state FROM queues ORDER BY last_ts DESC").fetchall()
    return [_load(r) for r in rows]


def save(db: sqlite3.Connection, q: QueueState) -> None:
    last = q.cur.last_ts if q.cur is not None else 0.0
    db.execute(
        "INSERT OR REPLACE INTO queues VALUES (?, ?, ?)",
        (q.queue_id, json.dumps(asdict(q)), last),
    )


def apply_queue(db: sqlite3.Connection, u: QueueUpdate) -> list[Segment]:
    row = db.execute("SELECT state FROM queues WHERE queue_id = ?", (u.queue_id,)).fetchone()
    q = _load(row) if row else QueueState(u.queue_id)
    book, q = on_queue(q, u)
    save(db, q)
    return book


def apply_report(db: sqlite3.Connection, r: Report) -> list[Segment] | None:
    """Fold a report into the queue it is about; None when no queue is known (a sender that
    forwards no queue events: the per-user fold applies). A report of an item no known queue
    holds (the re-report of a listen from before, an item queued before insight saw the
    queue) is not booked; with one queue it still names that queue's user."""
    queues = load_all(db)
    if not queues:
        return None
    for q in queues:
        which = match(q, r.track_id, r.is_playing)
        if which is not None:
            break
    else:
        if len(queues) > 1:
            return []
        q, which = queues[0], None
    book, q = on_report(
        q, which, r.user_id, r.position, r.duration, r.fully_played, r.is_playing, r.ts
    )
    save(db, q)
    return book


def sweep(db: sqlite3.Connection, cutoff: float) -> list[Segment]:
    """Book the current segments of queues nothing was heard from since ``cutoff``."""
    book: list[Segment] = []
    rows = db.execute("SELECT state FROM queues WHERE last_ts < ?", (cutoff,)).fetchall()
    for row in rows:
        q = _load(row)
        cur = q.cur
        if cur is None or cur.booked >= 0 or not cur.started or not cur.user_id:
            continue
        cur = advance(cur, cur.last_ts)
        book.append(replace(cur, booked=cur.seconds(), state=IDLE))
        save(db, replace(q, cur=book[-1]))
    return book


def as_listen(seg: Segment, booked: bool = True) -> Listen:
    return Listen(
        track_id=seg.track_id,
        started=seg.started,
        last_ts=seg.last_ts,
        position=seg.seconds(),
        duration=seg.duration,
        fully_played=seg.full(),
        playing=seg.state == "playing",
        booked=booked,
    )


def open_segment(db: sqlite3.Connection, user_id: str) -> Listen | None:
    """The user's listen still open on a queue (playing or paused, not booked)."""
    for q in load_all(db):
        cur = q.cur
        if cur is not None and cur.user_id == user_id and cur.started and cur.booked < 0:
            return as_listen(cur, booked=False)
    return None
