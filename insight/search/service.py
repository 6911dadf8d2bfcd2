"""Searching the library: by a vector in one collection, and by a sentence over both.

A text query is embedded once and searched in the text and the audio collection; a track found
in both keeps its better score. Audio hits are boosted as in the original sidecar: text-to-audio
cosine runs lower than text-to-text for the same relevance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from insight.schemas import SearchFilter
from insight.search.filter import store_where
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, ScoredPoint, VectorStore

if TYPE_CHECKING:
    from insight.inference.pool import InferencePool

AUDIO_SCORE_BOOST = 1.15
COLLECTIONS = {"text": TRACKS_TEXT, "audio": TRACKS_AUDIO}


async def by_vector(
    store: VectorStore,
    collection: str,
    vector: np.ndarray,
    limit: int,
    flt: SearchFilter | None,
) -> list[ScoredPoint]:
    """The ``limit`` nearest tracks of ``collection`` ("text" or "audio") that pass ``flt``."""
    return await store.search(COLLECTIONS[collection], vector, limit, store_where(flt))


def merge_best(
    text_hits: list[ScoredPoint], audio_hits: list[ScoredPoint], limit: int
) -> list[ScoredPoint]:
    """One ranking of both collections' hits: each track once, at its best (boosted) score."""
    best: dict[str, ScoredPoint] = {h.key: h for h in text_hits}
    for h in audio_hits:
        boosted = ScoredPoint(h.key, min(1.0, h.score * AUDIO_SCORE_BOOST), h.payload)
        if h.key not in best or boosted.score > best[h.key].score:
            best[h.key] = boosted
    return sorted(best.values(), key=lambda h: h.score, reverse=True)[:limit]


async def by_text(
    store: VectorStore,
    pool: InferencePool,
    query: str,
    limit: int,
    flt: SearchFilter | None,
) -> list[ScoredPoint]:
    """Tracks matching a sentence, from the text and the audio collection."""
    vector = (await pool.embed_texts([query]))[0]
    where = store_where(flt)
    text_hits = await store.search(TRACKS_TEXT, vector, limit * 2, where)
    audio_hits = await store.search(TRACKS_AUDIO, vector, limit * 2, where)
    return merge_best(text_hits, audio_hits, limit)
