"""Music Assistant events → insight bus messages (pure functions, no I/O).

An MA event is its ``MassEvent`` wire shape ``{"event", "object_id", "data"}``. Library events of
tracks go to ``insight.events.library.track.*`` with the event unchanged plus a top-level
``metadata_hash`` (what the text embedding depends on, so the worker skips unchanged tracks);
final playback reports go to ``insight.events.playback.played``; a finished library sync to
``insight.events.library.sync.completed``. Every message carries a ``Nats-Msg-Id`` derived from
its content, so the same observation published twice (a retry, a backfill right after an
update) is stored once by JetStream's duplicate window.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from insight.bus import subjects

MEDIA_ITEM_ADDED = "media_item_added"
MEDIA_ITEM_UPDATED = "media_item_updated"
MEDIA_ITEM_DELETED = "media_item_deleted"
MEDIA_ITEM_PLAYED = "media_item_played"
MUSIC_SYNC_COMPLETED = "music_sync_completed"

LIBRARY_SUBJECTS = {
    MEDIA_ITEM_ADDED: subjects.TRACK_ADDED,
    MEDIA_ITEM_UPDATED: subjects.TRACK_UPDATED,
    MEDIA_ITEM_DELETED: subjects.TRACK_DELETED,
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for JetStream: subject, msgpack-able payload, dedupe id."""

    subject: str
    payload: dict[str, Any]
    msg_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": self.msg_id}


def _digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def msg_id(*parts: Any) -> str:
    """A stable ``Nats-Msg-Id`` for these parts (short, header-safe)."""
    return "ma-" + _digest(*parts)[:40]


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("name")
        return str(name) if name else None
    return str(value) if value else None


def artist_names(track: dict[str, Any]) -> list[str]:
    """``artists`` as MA serialises them: list of Artist/ItemMapping dicts, or of names."""
    names = [_name(a) for a in track.get("artists") or []]
    return [n for n in names if n]


def genres(track: dict[str, Any]) -> list[str]:
    meta = track.get("metadata") or {}
    return sorted({str(g) for g in meta.get("genres") or []})


def metadata_hash(track: dict[str, Any]) -> str:
    """Hash of what a track's text embedding and payload depend on."""
    meta = track.get("metadata") or {}
    return _digest(
        track.get("name"),
        track.get("version"),
        artist_names(track),
        _name(track.get("album")),
        genres(track),
        meta.get("mood"),
        meta.get("style"),
        track.get("duration"),
    )[:32]


def is_track(object_id: Any, data: Any) -> bool:
    if isinstance(data, dict) and data.get("media_type") is not None:
        return str(data["media_type"]).lower() == "track"
    return isinstance(object_id, str) and "://track/" in object_id


def track_message(event: str, track: dict[str, Any], object_id: str | None = None) -> Outgoing:
    """A track added/updated (or backfilled) as the library subject's message."""
    uri = object_id or str(track.get("uri") or "")
    mh = metadata_hash(track)
    payload = {"event": event, "object_id": uri, "data": track, "metadata_hash": mh}
    return Outgoing(LIBRARY_SUBJECTS[event], payload, msg_id(event, uri, mh))


def translate(message: dict[str, Any], now: int | None = None) -> Outgoing | None:
    """The bus message for one MA event, or None for events insight does not take.

    ``now`` (unix seconds the event was seen) goes into played events as ``timestamp``; it is
    not part of the dedupe id.
    """
    event = message.get("event")
    object_id = message.get("object_id")
    data = message.get("data")
    if event in (MEDIA_ITEM_ADDED, MEDIA_ITEM_UPDATED):
        if not isinstance(data, dict) or not is_track(object_id, data):
            return None
        return track_message(str(event), data, object_id)
    if event == MEDIA_ITEM_DELETED:
        if not object_id or not is_track(object_id, data):
            return None
        payload = {"event": event, "object_id": object_id, "data": data}
        return Outgoing(subjects.TRACK_DELETED, payload, msg_id(event, object_id))
    if event == MEDIA_ITEM_PLAYED:
        return _played(message, now)
    if event == MUSIC_SYNC_COMPLETED:
        payload = {"event": event, "object_id": object_id, "data": data}
        return Outgoing(subjects.SYNC_COMPLETED, payload, msg_id(event, object_id, data))
    return None


def _played(message: dict[str, Any], now: int | None) -> Outgoing | None:
    """Only the final report of a play (``is_playing`` false) and only for tracks."""
    data = message.get("data")
    if not isinstance(data, dict) or data.get("is_playing"):
        return None
    uri = message.get("object_id") or data.get("uri")
    if not uri or not is_track(uri, data):
        return None
    payload: dict[str, Any] = {"event": MEDIA_ITEM_PLAYED, "object_id": uri, "data": data}
    if now is not None:
        payload["timestamp"] = now
    key = (
        MEDIA_ITEM_PLAYED,
        uri,
        data.get("userid"),
        round(float(data.get("seconds_played") or 0)),
        bool(data.get("fully_played")),
    )
    return Outgoing(subjects.PLAYED, payload, msg_id(*key))


def favorite_message(user_id: str, track_id: str, favorite: bool, timestamp: int) -> Outgoing:
    subject = subjects.FAVORITE if favorite else subjects.UNFAVORITE
    payload = {"user_id": user_id, "track_id": track_id, "timestamp": timestamp}
    return Outgoing(subject, payload, msg_id("favorite", user_id, track_id, favorite, timestamp))


class FavoriteTracker:
    """MA has no favorite event: a track's ``favorite`` flag changes in its update events.

    Remembers the last flag per track and yields a favorite/unfavorite message on a change
    (and for a favorite seen the first time: the worker's write is idempotent).
    """

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._state: dict[str, bool] = {}

    def observe(self, tracks: Iterable[dict[str, Any]], timestamp: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        for track in tracks:
            uri, fav = track.get("uri"), track.get("favorite")
            if not uri or not isinstance(fav, bool):
                continue
            before = self._state.get(uri)
            self._state[uri] = fav
            if before == fav or (before is None and not fav):
                continue
            out.append(favorite_message(self.user_id, uri, fav, timestamp))
        return out

    def forget(self, uri: str) -> None:
        self._state.pop(uri, None)
