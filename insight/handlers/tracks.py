"""Track storage: get, delete, upsert, embed-and-store (searching them: insight/search/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import InsightError, NotFound
from insight.library import Library, TextItem, file_paths_visible, track_metadata
from insight.schemas import (
    BatchEmbedTextRequest,
    BatchItemResult,
    BatchResponse,
    BatchUpsertRequest,
    DeleteTrackRequest,
    DeleteTrackResponse,
    EmbedTextAndStoreRequest,
    EmbedTextAndStoreResponse,
    GetTrackRequest,
    TrackResponse,
    UpsertRequest,
    UpsertResponse,
)
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.vectors import checked

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="tracks")


def library(app: App) -> Library:
    lib = app.services.library
    return lib


@router.endpoint("tracks.get", "GET", "/tracks/{track_id}", errors=(404,))
async def get_track(app: App, req: GetTrackRequest) -> TrackResponse:
    """Track info, and its embeddings when asked (include_text / include_audio)."""
    store = app.require_store()
    text = await store.get(TRACKS_TEXT, [req.track_id], with_vectors=req.include_text)
    audio = await store.get(TRACKS_AUDIO, [req.track_id], with_vectors=req.include_audio)
    if not text and not audio:
        raise NotFound(f"Track '{req.track_id}' not found")
    payload = (text or audio)[0].payload
    return TrackResponse(
        track_id=req.track_id,
        metadata=track_metadata(payload, file_paths=file_paths_visible(app)),
        has_text=bool(text),
        has_audio=bool(audio),
        text_embedding=text[0].vector.tolist() if text and text[0].vector is not None else None,
        audio_embedding=audio[0].vector.tolist() if audio and audio[0].vector is not None else None,
    )


@router.endpoint("tracks.delete", "DELETE", "/tracks/{track_id}", body="optional")
async def delete_track(app: App, req: DeleteTrackRequest) -> DeleteTrackResponse:
    """Remove a track from the text and/or audio collection."""
    text, audio = await library(app).delete_track(req.track_id, text=req.text, audio=req.audio)
    return DeleteTrackResponse(track_id=req.track_id, text_deleted=text, audio_deleted=audio)


async def _upsert(app: App, req: UpsertRequest) -> UpsertResponse:
    dim = app.dim
    text = (
        checked(req.text_embedding, dim, "Text embedding")
        if req.text_embedding is not None
        else None
    )
    audio = (
        checked(req.audio_embedding, dim, "Audio embedding")
        if req.audio_embedding is not None
        else None
    )
    stored = await library(app).upsert_vectors(req.track_id, req.metadata, text, audio)
    return UpsertResponse(
        track_id=req.track_id, text_stored=stored.text_stored, audio_stored=stored.audio_stored
    )


@router.endpoint("tracks.upsert", "POST", "/tracks/upsert")
async def upsert(app: App, req: UpsertRequest) -> UpsertResponse:
    """Upsert a track with pre-computed embeddings (the model's size; mood derived if possible)."""
    return await _upsert(app, req)


@router.endpoint("tracks.batch-upsert", "POST", "/tracks/batch-upsert")
async def batch_upsert(app: App, req: BatchUpsertRequest) -> BatchResponse:
    """Upsert up to 100 tracks; one result per track, in request order."""
    app.require_store()
    out = []
    for item in req.tracks:
        try:
            r = await _upsert(app, item)
            out.append(
                BatchItemResult(
                    track_id=item.track_id,
                    success=True,
                    text_stored=r.text_stored,
                    audio_stored=r.audio_stored,
                )
            )
        except InsightError as err:
            out.append(BatchItemResult(track_id=item.track_id, success=False, error=err.message))
    return batch_response(out)


def batch_response(items: list[BatchItemResult]) -> BatchResponse:
    ok = sum(r.success for r in items)
    return BatchResponse(results=items, total=len(items), succeeded=ok, failed=len(items) - ok)


@router.endpoint("tracks.embed-text", "POST", "/tracks/embed-text")
async def embed_text_and_store(
    app: App, req: EmbedTextAndStoreRequest
) -> EmbedTextAndStoreResponse:
    """Embed track metadata and store it (skipped when metadata_hash is unchanged)."""
    [r] = await library(app).ingest_text([TextItem(req.track_id, req.metadata)])
    return EmbedTextAndStoreResponse(
        track_id=req.track_id, stored=not r.skipped, text=r.text, primary_mood=r.primary_mood
    )


@router.endpoint("tracks.batch-embed-text", "POST", "/tracks/batch-embed-text")
async def batch_embed_text(app: App, req: BatchEmbedTextRequest) -> BatchResponse:
    """Embed and store up to 100 tracks in one inference batch, in request order."""
    items = [TextItem(t.track_id, t.metadata) for t in req.tracks]
    stored = await library(app).ingest_text(items)
    return batch_response(
        [
            BatchItemResult(
                track_id=s.track_id, success=True, text_stored=s.text_stored, text=s.text or None
            )
            for s in stored
        ]
    )
