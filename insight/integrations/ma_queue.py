"""Music Assistant queue events → the small queue messages the worker folds listens with.

MA sends ``queue_updated`` (the whole ``PlayerQueue``) on every queue change and
``queue_time_updated`` (``object_id`` = queue id, ``data`` = elapsed seconds) when the player's
elapsed time is set: a stream start, a seek, a repeat wrap. The bridge forwards only what a
listen depends on, ``{queue_id, item_id, track_id, state, elapsed, duration, jump, timestamp}``,
and only when the current queue item or the state changes, the elapsed time goes back, or on a
``queue_time_updated`` (``jump``). A queue without a current item (cleared by ``play_media``
replace, a moment later holding the new item) is skipped; an item that is not a track is sent
as ``idle`` (it ends the listen before it and is never one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from insight.bus import subjects
from insight.integrations.ma_events import Observations, Outgoing
from insight.integrations.ma_resolve import Command, UriResolver

QUEUE_UPDATED = "queue_updated"
QUEUE_TIME_UPDATED = "queue_time_updated"
QUEUE_EVENTS = (QUEUE_UPDATED, QUEUE_TIME_UPDATED)
MAX_QUEUES = 1000


@dataclass
class _Queue:
    item_id: str
    uri: str
    state: str
    elapsed: float
    duration: float


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return 0.0


def current_item(queue: dict[str, Any]) -> tuple[str, str, float] | None:
    """(queue_item_id, media item uri, duration) of a ``PlayerQueue``'s current item."""
    item = queue.get("current_item")
    if not isinstance(item, dict) or not item.get("queue_item_id"):
        return None
    media = item.get("media_item")
    uri = media.get("uri") if isinstance(media, dict) else None
    if not isinstance(uri, str) or not uri:
        return None
    duration = _num(item.get("duration")) or _num(media.get("duration"))  # type: ignore[union-attr]
    return str(item["queue_item_id"]), uri, duration


class QueueTracker:
    """The last forwarded state per queue; ``observe`` → the state to forward, or None."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def observe(self, message: dict[str, Any]) -> tuple[str, _Queue, bool] | None:
        event, data = message.get("event"), message.get("data")
        if event == QUEUE_UPDATED and isinstance(data, dict) and data.get("queue_id"):
            qid = str(data["queue_id"])
            cur = current_item(data)
            if cur is None:
                return None
            # radio, podcasts, audiobooks: no listens, but they end the track before them
            state = str(data.get("state") or "idle").lower() if "://track/" in cur[1] else "idle"
            new = _Queue(cur[0], cur[1], state, _num(data.get("elapsed_time")), cur[2])
            old = self._queues.get(qid)
            self._remember(qid, new)
            changed = old is None or (old.item_id, old.state) != (new.item_id, new.state)
            return (qid, new, False) if changed or new.elapsed < old.elapsed else None  # type: ignore[union-attr]
        if event == QUEUE_TIME_UPDATED and message.get("object_id") in self._queues:
            qid = str(message["object_id"])
            q = self._queues[qid]
            q.elapsed = _num(data)
            return qid, q, True
        return None

    async def translate(
        self,
        message: dict[str, Any],
        now: float,
        ids: Observations,
        resolver: UriResolver,
        command: Command | None,
    ) -> Outgoing | None:
        """The queue message to forward for this event (the item's library uri), or None."""
        seen = self.observe(message)
        if seen is None:
            return None
        uri = await resolver.resolve(seen[1].uri, command)
        return queue_message(*seen, uri, ids.next(), now)

    def _remember(self, qid: str, q: _Queue) -> None:
        if qid not in self._queues and len(self._queues) >= MAX_QUEUES:
            self._queues.clear()  # bounded; a queue's next update is forwarded whole again
        self._queues[qid] = q


def queue_message(
    qid: str, q: _Queue, jump: bool, track_id: str, msg_id: str, now: float
) -> Outgoing:
    payload = {
        "queue_id": qid,
        "item_id": q.item_id,
        "track_id": track_id,
        "state": q.state,
        "elapsed": q.elapsed,
        "duration": q.duration,
        "jump": jump,
        "timestamp": now,
    }
    return Outgoing(subjects.QUEUE, payload, msg_id)
