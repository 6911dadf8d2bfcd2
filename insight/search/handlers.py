"""The search endpoints: a vector in one collection, a sentence over both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.library import file_paths_visible, track_metadata
from insight.schemas import SearchRequest, SearchResponse, SearchResult, TextSearchRequest
from insight.search import service
from insight.storage.base import ScoredPoint
from insight.vectors import checked

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="tracks")


def results(hits: list[ScoredPoint], file_paths: bool = False) -> SearchResponse:
    out = [
        SearchResult(
            track_id=h.key, score=h.score, metadata=track_metadata(h.payload, file_paths=file_paths)
        )
        for h in hits
    ]
    return SearchResponse(results=out, count=len(out))


@router.endpoint("tracks.search", "POST", "/tracks/search")
async def search(app: App, req: SearchRequest) -> SearchResponse:
    """Search one collection (text or audio) by an embedding, with an optional filter."""
    vector = checked(req.embedding, app.dim, "Query embedding")
    scope = app.in_model_space(req.filter)
    hits = await service.by_vector(app.require_store(), req.collection, vector, req.limit, scope)
    return results(hits, file_paths_visible(app))


@router.endpoint("tracks.search-text", "POST", "/tracks/search-text")
async def search_text(app: App, req: TextSearchRequest) -> SearchResponse:
    """Natural-language search over text and audio embeddings, merged by best score."""
    store, pool = app.require_store(), app.require_pool()
    scope = app.in_model_space(req.filter)
    hits = await service.by_text(store, pool, req.query, req.limit, scope)
    return results(hits, file_paths_visible(app))
