"""Music Assistant events → insight bus messages (pure functions, no I/O).

An MA event is its ``MassEvent`` wire shape ``{"event", "object_id", "data"}``. Library events of
tracks go to ``insight.events.library.track.*`` with the event unchanged plus a top-level
``metadata_hash`` (what the text embedding depends on, so the worker skips unchanged tracks);
every playback progress report of a track goes to ``insight.events.playback.played`` (the worker
folds the reports of one queue item into one listen); a finished library sync to
``insight.events.library.sync.completed``.

Every message carries a ``Nats-Msg-Id`` that names one *observation* (this bridge run, this
event's arrival number), never its content: a publish retry dedupes, a later change with equal
content (A→B→A, add/delete/add) is a new message and applies in order. See
docs/music-assistant.md for the model of MA's streams this follows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from insight.bus import subjects

MEDIA_ITEM_ADDED = "media_item_added"
MEDIA_ITEM_UPDATED = "media_item_updated"
MEDIA_ITEM_DELETED = "media_item_deleted"
MEDIA_ITEM_PLAYED = "media_item_played"
MUSIC_SYNC_COMPLETED = "music_sync_completed"
SYNC_TASKS_UPDATED = "sync_tasks_updated"
FAVORITE_UPDATED = "favorite_updated"

# The bridge's own markers (under the library / playback filters, so the worker's consumers
# receive them in stream order).
BACKFILL_STARTED = subjects.BACKFILL_STARTED
BACKFILL_COMPLETED = subjects.BACKFILL_COMPLETED
FAVORITES_SNAPSHOT = subjects.FAVORITES_SNAPSHOT

LIBRARY_SUBJECTS = {
    MEDIA_ITEM_ADDED: subjects.TRACK_ADDED,
    MEDIA_ITEM_UPDATED: subjects.TRACK_UPDATED,
    MEDIA_ITEM_DELETED: subjects.TRACK_DELETED,
}

MSGPACK = "application/msgpack"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for JetStream: subject, msgpack-able payload, dedupe id."""

    subject: str
    payload: dict[str, Any]
    msg_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": self.msg_id, "Content-Type": MSGPACK}


class Observations:
    """``Nats-Msg-Id``s naming observations: ``ma-<run>-<n>``, unique per bridge run.

    ``run`` is random per process, so a restarted bridge never reuses an id that is still in
    the stream's duplicate window; ``n`` counts what this run observed (events, backfilled
    tracks, markers). A publish retry reuses its message's id, so JetStream stores it once.
    """

    def __init__(self, run: str | None = None) -> None:
        self.run = run or secrets.token_hex(6)
        self._n = itertools.count(1)

    def next(self) -> str:
        return f"ma-{self.run}-{next(self._n)}"


def _digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


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
    album = track.get("album")
    return _digest(
        track.get("name"),
        track.get("version"),
        artist_names(track),
        _name(album),
        album.get("year") if isinstance(album, dict) else None,
        genres(track),
        meta.get("mood"),
        meta.get("style"),
        track.get("duration"),
        track.get("external_ids"),
        track.get("audio_metadata"),
    )[:32]


def is_track(object_id: Any, data: Any) -> bool:
    if isinstance(data, dict) and data.get("media_type") is not None:
        return str(data["media_type"]).lower() == "track"
    return isinstance(object_id, str) and "://track/" in object_id


def track_message(
    event: str,
    track: dict[str, Any],
    msg_id: str,
    object_id: str | None = None,
    backfill: str | None = None,
) -> Outgoing:
    """A track added/updated (or backfilled) as the library subject's message."""
    uri = object_id or str(track.get("uri") or "")
    track = slim(track)
    payload = {
        "event": event,
        "object_id": uri,
        "data": track,
        "metadata_hash": metadata_hash(track),
    }
    if backfill is not None:
        payload["backfill"] = backfill
    return Outgoing(LIBRARY_SUBJECTS[event], payload, msg_id)


HEAVY_METADATA = ("lyrics", "lrc_lyrics", "description", "review")


def slim(track: dict[str, Any]) -> dict[str, Any]:
    """The track without the long texts insight never reads (lyrics, description, review),
    so a track with long lyrics still fits in a NATS message."""
    meta = track.get("metadata")
    if not isinstance(meta, dict) or not any(meta.get(k) for k in HEAVY_METADATA):
        return track
    return {**track, "metadata": {k: v for k, v in meta.items() if k not in HEAVY_METADATA}}


def sync_finished(event: Any, data: Any) -> bool:
    """A library sync finished: ``music_sync_completed`` (newer MA) or ``sync_tasks_updated``
    with no task left (MA up to at least schema 29, where the former does not exist)."""
    if event == MUSIC_SYNC_COMPLETED:
        return True
    return event == SYNC_TASKS_UPDATED and isinstance(data, list) and not data


def translate(message: dict[str, Any], msg_id: str, now: float | None = None) -> Outgoing | None:
    """The bus message for one MA event, or None for events insight does not take.

    ``now`` (unix seconds the event was seen) goes into played events as ``timestamp``.
    Favorites are not translated here (``FavoriteTracker``/``favorite_updated``).
    """
    event = message.get("event")
    object_id = message.get("object_id")
    data = message.get("data")
    if event in (MEDIA_ITEM_ADDED, MEDIA_ITEM_UPDATED):
        if not isinstance(data, dict) or not is_track(object_id, data):
            return None
        return track_message(str(event), data, msg_id, object_id)
    if event == MEDIA_ITEM_DELETED:
        if not object_id or not is_track(object_id, data):
            return None
        payload = {"event": event, "object_id": object_id, "data": data}
        return Outgoing(subjects.TRACK_DELETED, payload, msg_id)
    if event == MEDIA_ITEM_PLAYED:
        return played(message, msg_id, now)
    if sync_finished(event, data):
        payload = {"event": MUSIC_SYNC_COMPLETED, "object_id": object_id, "source": event}
        return Outgoing(subjects.SYNC_COMPLETED, payload, msg_id)
    return None


def played(message: dict[str, Any], msg_id: str, now: float | None) -> Outgoing | None:
    """Every progress report of a track: MA sends one on each queue state change (play, pause,
    next item) and every 30 s while playing; the worker folds them into listens."""
    data = message.get("data")
    if not isinstance(data, dict):
        return None
    uri = message.get("object_id") or data.get("uri")
    if not uri or not is_track(uri, data):
        return None
    payload: dict[str, Any] = {"event": MEDIA_ITEM_PLAYED, "object_id": uri, "data": data}
    if now is not None:
        payload["timestamp"] = now
    return Outgoing(subjects.PLAYED, payload, msg_id)


def favorite_message(
    user_id: str, track_id: str, favorite: bool, timestamp: float, msg_id: str
) -> Outgoing:
    subject = subjects.FAVORITE if favorite else subjects.UNFAVORITE
    payload = {"user_id": user_id, "track_id": track_id, "timestamp": timestamp}
    return Outgoing(subject, payload, msg_id)


def favorite_updated(
    message: dict[str, Any], msg_id: str, now: float, resolve: dict[str, str]
) -> Outgoing | None:
    """Newer MA's per-user ``favorite_updated`` ``{user_id, media_type, item_id, uri,
    favorite}``: ``True`` a like; ``False`` (a dislike) and ``None`` (unset) are no favorite."""
    data = message.get("data")
    if not isinstance(data, dict) or not data.get("user_id"):
        return None
    uri = data.get("uri") or message.get("object_id")
    if not isinstance(uri, str) or not is_track(uri, data):
        return None
    uri = resolve.get(uri, uri)
    return favorite_message(str(data["user_id"]), uri, data.get("favorite") is True, now, msg_id)


class FavoriteTracker:
    """Older MA has one global ``favorite`` flag per library item, changed by update events.

    Remembers the last flag per track and yields a favorite/unfavorite message on a change
    (and for a favorite seen the first time: the worker's write is idempotent). ``favorites()``
    is the full set after a complete backfill: the worker reconciles the user's favorites to it
    (an unfavorite made while the bridge was away is seen then).
    """

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._state: dict[str, bool] = {}

    def observe(
        self, tracks: Iterable[dict[str, Any]], timestamp: float, ids: Observations
    ) -> list[Outgoing]:
        out: list[Outgoing] = []
        for track in tracks:
            uri, fav = track.get("uri"), track.get("favorite")
            if not uri or not isinstance(fav, bool):
                continue
            before = self._state.get(uri)
            self._state[uri] = fav
            if before == fav or (before is None and not fav):
                continue
            out.append(favorite_message(self.user_id, uri, fav, timestamp, ids.next()))
        return out

    def forget(self, uri: str) -> None:
        self._state.pop(uri, None)

    def set(self, uri: str, favorite: bool) -> None:
        """The user's own state, from a per-user ``favorite_updated``."""
        self._state[uri] = favorite

    def favorites(self) -> list[str]:
        return sorted(uri for uri, fav in self._state.items() if fav)


def favorites_snapshot(
    user_id: str, track_ids: list[str], timestamp: float, msg_id: str
) -> Outgoing:
    payload = {"user_id": user_id, "track_ids": track_ids, "timestamp": timestamp}
    return Outgoing(FAVORITES_SNAPSHOT, payload, msg_id)


def provider_uris(track: dict[str, Any]) -> list[str]:
    """The provider uris MA may report for this library track (its provider mappings, by
    instance id and by domain: ``<provider>://track/<item_id>``)."""
    out = []
    for mapping in track.get("provider_mappings") or []:
        if not isinstance(mapping, dict) or mapping.get("item_id") is None:
            continue
        for prov in (mapping.get("provider_instance"), mapping.get("provider_domain")):
            if prov and prov != "library":
                out.append(f"{prov}://track/{mapping['item_id']}")
    return out


def parse_uri(uri: str) -> tuple[str, str, str] | None:
    """``provider://media_type/item_id`` → parts (None when not an MA uri)."""
    if "://" not in uri:
        return None
    provider, rest = uri.split("://", 1)
    media_type, _, item_id = rest.partition("/")
    if not provider or not media_type or not item_id:
        return None
    return provider, media_type, item_id
