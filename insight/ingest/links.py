"""Music Assistant tracks ↔ watched files of the same recording, by MusicBrainz id.

The folder watcher stores a file that carries a MusicBrainz recording id as ``mb:<id>`` with the
audio vector it heard. MA names the same recording ``library://track/<n>`` and lists the id in
its ``external_ids``. When an MA track with a recording id is applied, the file's audio vector
becomes the MA track's audio vector too (with the MA track's payload and ``linked_from``), so
audio similarity, moods and taste reach the uris MA plays. A file scanned after the MA track
is linked at the next backfill (every backfill re-applies every MA track).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point

if TYPE_CHECKING:
    from insight.state import StoreSlot

log = logging.getLogger("insight.events")

WATCHER_PREFIX = "mb:"
HEARD = ("primary_mood", "moods", "mood_scores", "valence", "arousal")  # from the audio


def heard(file: Point) -> dict[str, object]:
    """What a file's analysis adds to the payload of an MA track linked to it."""
    return {k: file.payload[k] for k in HEARD if k in file.payload}


async def link_audio(stores: StoreSlot, tracks: dict[str, str]) -> list[str]:
    """``tracks``: MA track id → MusicBrainz recording id. Returns the ids given a vector."""
    if not tracks:
        return []
    store = stores.require_store()
    files = {p.key: p for p in await store.get(TRACKS_AUDIO, _keys(tracks), with_vectors=True)}
    if not files:
        return []
    texts = {p.key: p for p in await store.get(TRACKS_TEXT, list(tracks))}
    points = []
    for track_id, mbid in tracks.items():
        file = files.get(WATCHER_PREFIX + mbid)
        text = texts.get(track_id)
        if file is None or file.vector is None or text is None:
            continue
        payload = {
            **text.payload,
            **heard(file),
            "file_path": file.payload.get("file_path"),
            "linked_from": file.key,
        }
        points.append(Point(track_id, file.vector, payload))
    if points:
        await store.upsert(TRACKS_AUDIO, points)
        log.info("audio_linked tracks=%d", len(points))
    return [p.key for p in points]


def _keys(tracks: dict[str, str]) -> list[str]:
    return sorted({WATCHER_PREFIX + mbid for mbid in tracks.values()})
