"""A synthetic library with known structure for taste/recommend/similar tests.

Three orthogonal clusters (A, B, C) of ``per_artist * artists`` tracks each. Inside a cluster,
every artist has its own sub-centre; artist 0's sub-centre sits closest to the cluster centre,
so pure relevance (MMR lambda = 1) favours artist 0 and diversity has something to fix.
Payloads carry the moods of the cluster, so mood / V-A filters and mood profiles can be checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from insight.history import ListeningHistory
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point

if TYPE_CHECKING:
    from insight.app import App

CLUSTER_MOODS: dict[str, dict[str, Any]] = {
    "A": {
        "primary_mood": "energetic",
        "moods": ["energetic", "happy"],
        "valence": 0.7,
        "arousal": 0.8,
        "genres": ["Dance"],
    },
    "B": {
        "primary_mood": "melancholic",
        "moods": ["melancholic", "sad"],
        "valence": -0.6,
        "arousal": -0.4,
        "genres": ["Doom"],
    },
    "C": {
        "primary_mood": "peaceful",
        "moods": ["peaceful", "calm"],
        "valence": 0.5,
        "arousal": -0.7,
        "genres": ["Ambient"],
    },
}


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class Library:
    dim: int
    centres: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    cluster: dict[str, str] = field(default_factory=dict)
    artist: dict[str, str] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ids(self, cluster: str) -> list[str]:
        return [t for t, c in self.cluster.items() if c == cluster]


def build(dim: int = 512, artists: int = 6, per_artist: int = 5, seed: int = 7) -> Library:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 3 + artists * 3 + 200)))
    basis = basis.T  # orthonormal rows
    lib = Library(dim, {name: basis[i].astype(np.float32) for i, name in enumerate("ABC")})
    k = 3
    for name, centre in lib.centres.items():
        for a in range(artists):
            spread = 0.25 if a == 0 else 0.8
            sub = unit(centre + spread * basis[k])
            k += 1
            for j in range(per_artist):
                noise = rng.standard_normal(dim).astype(np.float32)
                vec = unit(sub + 0.15 * unit(noise))
                tid = f"{name}{a}-{j}"
                artist = f"Artist {name}{a}"
                lib.vectors[tid] = vec
                lib.cluster[tid] = name
                lib.artist[tid] = artist
                mood = CLUSTER_MOODS[name]
                lib.payloads[tid] = {
                    "track_id": tid,
                    "name": f"Song {tid}",
                    "artists": [artist],
                    "album": f"Album {name}{a}",
                    "genres": mood["genres"],
                    "primary_mood": mood["primary_mood"],
                    "moods": mood["moods"],
                    "mood_scores": {m: 0.5 for m in mood["moods"]},
                    "valence": mood["valence"],
                    "arousal": mood["arousal"],
                    "updated_at": 1,
                }
    return lib


async def store_library(app: App, lib: Library, audio_every: int = 2) -> None:
    """Every track in tracks_text; every ``audio_every``-th also in tracks_audio (same vector),
    recorded as made by the loaded model, as the service records what it embeds."""
    store = app.require_store()
    made_by = {"model_id": app.require_pool().model.model_id}
    text = [Point(t, v, {**lib.payloads[t], **made_by}) for t, v in lib.vectors.items()]
    audio = [
        Point(t, v, {**lib.payloads[t], **made_by})
        for i, (t, v) in enumerate(lib.vectors.items())
        if audio_every and i % audio_every == 0
    ]
    await store.upsert(TRACKS_TEXT, text)
    if audio:
        await store.upsert(TRACKS_AUDIO, audio)


@asynccontextmanager
async def history_service(app: App, path: Path) -> AsyncIterator[ListeningHistory]:
    """A listening history at ``path`` as the app's ``history`` service for the block; the
    previous one is put back afterwards."""
    history = ListeningHistory(path)
    await history.open()
    previous = app.services.history
    app.services.history = history
    try:
        yield history
    finally:
        app.services.history = previous
        await history.close()
