"""Track vectors and metadata as taste code sees them: audio where present, text otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from insight.library import track_metadata
from insight.schemas import TrackMetadata
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore
from insight.vectors import unit_rows


@dataclass(slots=True)
class TrackView:
    track_id: str
    vector: np.ndarray  # unit, audio if the track has one, else text
    payload: dict[str, Any]
    space: str  # "audio" | "text"

    @property
    def name(self) -> str:
        return str(self.payload.get("name") or self.track_id)

    @property
    def artists(self) -> list[str]:
        a = self.payload.get("artists")
        return [x for x in a if isinstance(x, str)] if isinstance(a, list) else []

    @property
    def primary_mood(self) -> str | None:
        m = self.payload.get("primary_mood")
        return m if isinstance(m, str) else None

    def label(self) -> str:
        """``"Name" by Artist`` for reasons."""
        by = f" by {', '.join(self.artists[:2])}" if self.artists else ""
        return f'"{self.name}"{by}'


async def track_views(
    store: VectorStore, ids: list[str], prefer: str = "audio"
) -> dict[str, TrackView]:
    """Views of the tracks that have a vector (missing ones are simply absent).

    The vector comes from ``prefer`` ("audio" or "text") when the track has one there, else
    from the other collection; metadata merges both payloads (text first: it carries the
    tags; mood from whichever has it).
    """
    uniq = list(dict.fromkeys(ids))
    if not uniq:
        return {}
    audio = {p.key: p for p in await store.get(TRACKS_AUDIO, uniq, with_vectors=True)}
    text = {p.key: p for p in await store.get(TRACKS_TEXT, uniq, with_vectors=True)}
    first, second = (audio, text) if prefer == "audio" else (text, audio)
    out: dict[str, TrackView] = {}
    for key in uniq:
        a, t = audio.get(key), text.get(key)
        src = first.get(key) if first.get(key) is not None else second.get(key)
        if src is None or src.vector is None:
            continue
        payload = {**(a.payload if a else {}), **(t.payload if t else {})}
        for k in ("primary_mood", "moods", "mood_scores", "valence", "arousal"):
            if payload.get(k) is None:
                for p in (a, t):
                    if p is not None and p.payload.get(k) is not None:
                        payload[k] = p.payload[k]
        out[key] = TrackView(
            key,
            unit_rows(np.asarray(src.vector, dtype=np.float32)),
            payload,
            "audio" if src is a else "text",
        )
    return out


def metadata_of(
    track_id: str, payload: dict[str, Any], *, file_paths: bool = False
) -> TrackMetadata:
    """A result's metadata; ``file_path`` only when exposed (see ``library.track_metadata``)."""
    return track_metadata({**payload, "track_id": track_id}, file_paths=file_paths)
