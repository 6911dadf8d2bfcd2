"""Music Assistant traces for replay: real ``music-assistant-models`` objects, serialised as the
MA server sends them (``MassEvent.to_json()``), built from tracks a real MA server sent
(tests/data/real-ma, recorded from MA dev 2026-02, API schema 29)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from music_assistant_models.enums import EventType, MediaType
from music_assistant_models.event import MassEvent
from music_assistant_models.media_items import MediaItemMetadata, ProviderMapping, Track
from music_assistant_models.playback_progress_report import MediaItemPlaybackProgressReport

DATA = Path(__file__).parent / "data" / "real-ma"


def recorded_lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]


def recorded_tracks() -> dict[str, Track]:
    """The first full Track MA sent for each uri (the 8 generated files of the recording)."""
    out: dict[str, Track] = {}
    for line in recorded_lines("library-sync-edit-delete.jsonl"):
        if line.get("full") and line["event"] == "media_item_added":
            out.setdefault(line["object_id"], Track.from_dict(line["full"]))
    return out


def edited(track: Track, **changes: Any) -> Track:
    """A copy with changed fields; ``genres=[...]`` sets the metadata genres."""
    genres = changes.pop("genres", None)
    if genres is not None:
        changes["metadata"] = replace(track.metadata, genres=set(genres))
    new = Track.from_dict(track.to_dict())
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def with_mapping(track: Track, provider: str, item_id: str) -> Track:
    new = Track.from_dict(track.to_dict())
    new.provider_mappings.add(
        ProviderMapping(item_id=item_id, provider_domain=provider, provider_instance=provider)
    )
    return new


def event(kind: EventType, track: Track) -> str:
    return MassEvent(event=kind, object_id=track.uri, data=track).to_json()


def report(
    track: Track,
    user: str,
    seconds: int,
    *,
    playing: bool,
    uri: str | None = None,
    is_current: bool = True,
) -> str:
    """What ``PlayerQueuesController._handle_playback_progress_report`` signals: fully played
    within 10 s of the end for the current item, at 90 % for the item just left."""
    duration = int(track.duration or 0)
    full = seconds >= duration - 10 if is_current else seconds * 100 / duration >= 90
    data = MediaItemPlaybackProgressReport(
        uri=uri or track.uri,
        media_type=MediaType.TRACK,
        name=track.name,
        duration=duration,
        seconds_played=seconds,
        fully_played=full,
        is_playing=playing and is_current,
        artists=[a.name for a in track.artists],
        version=track.version,
        userid=user,
    )
    return MassEvent(event=EventType.MEDIA_ITEM_PLAYED, object_id=data.uri, data=data).to_json()


def sync_tasks(n: int) -> str:
    """``sync_tasks_updated``: MA sends its in-progress SyncTask list (empty: all done)."""
    tasks = [{"provider_domain": "filesystem_local", "media_types": ["track"]}] * n
    return json.dumps({"event": "sync_tasks_updated", "object_id": None, "data": tasks})


def library_dicts(tracks: list[Track]) -> list[dict[str, Any]]:
    """The library as ``music/tracks/library_items`` answers (serialised Tracks)."""
    return [t.to_dict() for t in tracks]


__all__ = ["EventType", "MediaItemMetadata"]
