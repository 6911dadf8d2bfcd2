"""Mood classification and the list of mood labels."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from insight.api import Router
from insight.errors import NotFound
from insight.mood.labels import mood_labels
from insight.schemas import Empty, MoodClassification, MoodClassifyRequest, MoodListResponse
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="mood")


@router.endpoint("mood.classify", "POST", "/mood/classify", errors=(400, 404, 503))
async def classify(app: App, req: MoodClassifyRequest) -> MoodClassification:
    """Classify mood from an embedding or a stored track (its audio vector, else its text)."""
    classifier = app.services.mood
    bank = await classifier.bank()  # 503 without a model, before any storage lookup
    vector: Any = req.embedding
    source = "embedding"
    if vector is None:
        assert req.track_id is not None
        store = app.require_store()
        for coll, name in ((TRACKS_AUDIO, "audio"), (TRACKS_TEXT, "text")):
            found = await store.get(coll, [req.track_id], with_vectors=True)
            if found and found[0].vector is not None:
                vector, source = found[0].vector, name
                break
        else:
            raise NotFound(
                f"track {req.track_id!r} has no stored embedding; store it first "
                "(POST /tracks/embed-text, /tracks/upsert or a stream)"
            )
    from insight.mood.classifier import classify as run

    out = run(bank, vector, req.tiers, req.top_k, req.include_va)
    out.source = source
    return out


@router.endpoint("mood.list", "GET", "/mood/list")
async def list_moods(app: App, req: Empty) -> MoodListResponse:
    """The 26 mood labels with their tier, prompt and valence/arousal hints."""
    labels = mood_labels()
    return MoodListResponse(
        moods=[m.info() for m in labels],
        counts=dict(Counter(m.tier.value for m in labels)),
    )
