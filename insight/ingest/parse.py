"""Reading Music Assistant shaped events (``MassEvent``) into what insight acts on.

A library event is ``{"event", "object_id": <uri>, "data": <Track>}``; the track id insight
uses is the uri. Artists and album may be MA objects (``{"name": ...}``) or plain strings;
genres live in ``data.metadata.genres`` (or ``data.genres``). A played event is every progress
report MA sends (``insight.ingest.listens`` folds them into listens). The bridge's own markers:
``backfill.started``/``backfill.completed`` ``{backfill_id}`` and the favorites snapshot
``{user_id, track_ids}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from insight.bus import subjects
from insight.ingest.listens import Report
from insight.ingest.queues import QueueUpdate
from insight.integrations.ma_events import BACKFILL_COMPLETED, BACKFILL_STARTED, FAVORITES_SNAPSHOT
from insight.limits import id_problem
from insight.schemas import EventTrackMetadata, HashedMetadata


class Poison(ValueError):
    """An event that can never be processed; it goes to the dead-letter stream."""


@dataclass(frozen=True)
class TrackEvent:
    kind: Literal["upsert", "delete", "sync", "backfill_started", "backfill_completed"]
    track_id: str = ""
    metadata: HashedMetadata | None = None
    backfill: str | None = None


@dataclass(frozen=True)
class PlaybackEvent:
    kind: Literal["played", "favorite", "unfavorite", "favorites", "queue"]
    user_id: str
    track_ids: list[str]
    timestamp: float | None = None
    report: Report | None = None
    queue: QueueUpdate | None = None


def check_id(value: Any, what: str = "track id") -> str:
    """An id valid for the API too (insight.limits), or the event is poison."""
    problem = id_problem(value, what)
    if problem is not None:
        raise Poison(problem)
    return str(value)


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if isinstance(value, str | int | float) and str(value) else None


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise Poison(f"expected a list of names, got {type(value).__name__}")
    return [n for n in (_name(v) for v in value) if n]


def _track_id(body: dict[str, Any], data: dict[str, Any]) -> str:
    tid = body.get("object_id") or data.get("uri")
    if not tid and data.get("item_id") is not None:
        tid = f"{data.get('provider', 'library')}://track/{data['item_id']}"
    if not isinstance(tid, str) or not tid:
        raise Poison("event has no track id (object_id, data.uri or data.item_id)")
    return check_id(tid)


def _body(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise Poison(f"event must be a map, got {type(obj).__name__}")
    data = obj.get("data") if obj.get("data") is not None else {}
    if not isinstance(data, dict):
        raise Poison(f"event data must be a map, got {type(data).__name__}")
    return obj, data


MB_RECORDING = "musicbrainz_recordingid"


def external_ids(value: Any) -> dict[str, str]:
    """MA's ``external_ids``: a set of ``(ExternalID, value)`` pairs, serialised as lists."""
    out: dict[str, str] = {}
    for pair in value if isinstance(value, list | tuple) else ():
        if isinstance(pair, list | tuple) and len(pair) == 2 and all(pair):
            out.setdefault(str(pair[0]), str(pair[1]))
    return out


def track_extras(data: dict[str, Any]) -> dict[str, Any]:
    """version, album year, external ids (MusicBrainz recording id), audio_metadata bpm/key.
    Extras that are not what MA sends are left out, never a reason to refuse the track."""
    ids = external_ids(data.get("external_ids"))
    album = data.get("album")
    audio = data.get("audio_metadata")
    audio = audio if isinstance(audio, dict) else {}
    year = album.get("year") if isinstance(album, dict) else None
    bpm = _float(audio.get("bpm"))
    mbid = ids.get(MB_RECORDING)
    return {
        "version": _text(data.get("version"), 4096),
        "year": year
        if isinstance(year, int) and not isinstance(year, bool) and 0 < year < 10_000
        else None,
        "mbid": mbid.lower() if mbid and len(mbid) <= 256 else None,
        "external_ids": {k: v for k, v in ids.items() if len(k) + len(v) <= 512} or None,
        "bpm": bpm if bpm is not None and 0 < bpm <= 1000 else None,
        "key": _text(audio.get("musical_key") or audio.get("key"), 64),
    }


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def parse_library(subject: str, obj: Any) -> TrackEvent:
    if subject == subjects.SYNC_COMPLETED:
        return TrackEvent("sync")
    body, data = _body(obj)
    if subject in (BACKFILL_STARTED, BACKFILL_COMPLETED):
        kind: Literal["backfill_started", "backfill_completed"] = (
            "backfill_started" if subject == BACKFILL_STARTED else "backfill_completed"
        )
        return TrackEvent(kind, backfill=check_id(body.get("backfill_id"), "backfill_id"))
    track_id = _track_id(body, data)
    if subject == subjects.TRACK_DELETED:
        return TrackEvent("delete", track_id)
    if subject not in (subjects.TRACK_ADDED, subjects.TRACK_UPDATED):
        raise Poison(f"unknown library event subject {subject}")
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    genres = data.get("genres") or meta.get("genres") or []
    try:
        metadata = EventTrackMetadata(
            name=data.get("name"),
            artists=_names(data.get("artists")),
            album=_name(data.get("album")),
            genres=sorted(_names(list(genres) if isinstance(genres, set) else genres)),
            metadata_hash=data.get("metadata_hash") or body.get("metadata_hash"),
            **track_extras(data),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Poison(f"invalid track data: {first['loc']}: {first['msg']}") from None
    backfill = body.get("backfill")
    return TrackEvent("upsert", track_id, metadata, str(backfill) if backfill else None)


def parse_playback(subject: str, obj: Any) -> PlaybackEvent:
    body, data = _body(obj)
    timestamp = _float(body.get("timestamp"))
    if subject in (subjects.FAVORITE, subjects.UNFAVORITE, FAVORITES_SNAPSHOT):
        user = check_id(str(body.get("user_id") or body.get("userid") or "default"), "user_id")
        if subject == FAVORITES_SNAPSHOT:
            ids = body.get("track_ids")
            if not isinstance(ids, list):
                raise Poison("favorites snapshot needs track_ids (a list)")
            return PlaybackEvent("favorites", user, [check_id(t) for t in ids], timestamp)
        track = body.get("track_id") or body.get("uri") or body.get("object_id")
        if not isinstance(track, str) or not track:
            raise Poison("favorite event has no track_id")
        kind: Literal["favorite", "unfavorite"] = (
            "favorite" if subject == subjects.FAVORITE else "unfavorite"
        )
        return PlaybackEvent(kind, user, [check_id(track)], timestamp)
    if subject == subjects.QUEUE:
        return parse_queue(body, timestamp)
    if subject != subjects.PLAYED:
        raise Poison(f"unknown playback event subject {subject}")
    track_id = _track_id(body, data)
    try:
        duration = float(data.get("duration") or 0)
        seconds = float(data.get("seconds_played") or 0)
    except (TypeError, ValueError):
        raise Poison("played event needs numeric duration and seconds_played") from None
    user = check_id(str(data.get("userid") or body.get("userid") or "default"), "userid")
    ts = _float(data.get("timestamp")) or timestamp
    report = Report(
        user_id=user,
        track_id=track_id,
        ts=ts if ts is not None else -1.0,
        position=seconds,
        duration=duration,
        fully_played=bool(data.get("fully_played")),
        is_playing=bool(data.get("is_playing")),
    )
    return PlaybackEvent("played", user, [track_id], ts, report)


def parse_queue(body: dict[str, Any], timestamp: float | None) -> PlaybackEvent:
    """The bridge's queue message (insight.integrations.ma_queue); ``user_id`` names the
    queue (``queue:<id>``): its events apply in order."""
    qid = check_id(body.get("queue_id"), "queue_id")
    state = body.get("state")
    if state not in ("playing", "paused", "idle"):
        raise Poison(f"queue state must be playing, paused or idle, got {state!r}")
    elapsed, duration = _float(body.get("elapsed")), _float(body.get("duration"))
    if elapsed is None or duration is None or not math.isfinite(elapsed + duration):
        raise Poison("queue event needs finite numeric elapsed and duration")
    update = QueueUpdate(
        queue_id=qid,
        item_id=check_id(body.get("item_id"), "item_id"),
        track_id=check_id(body.get("track_id")),
        state=state,
        elapsed=elapsed,
        duration=duration,
        ts=timestamp if timestamp is not None else -1.0,
        jump=body.get("jump") is True,
    )
    return PlaybackEvent("queue", f"queue:{qid}", [update.track_id], timestamp, queue=update)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
