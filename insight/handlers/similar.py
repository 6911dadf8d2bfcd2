"""Similar tracks (one seed or several, with negatives) and radio."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from insight.api import Router
from insight.schemas import (
    MultiSimilarRequest,
    RadioRequest,
    RecommendRequest,
    SearchResponse,
    SimilarRequest,
)
from insight.taste import similar as sim

if TYPE_CHECKING:
    from insight.app import App

R = TypeVar("R", SimilarRequest, MultiSimilarRequest, RadioRequest, RecommendRequest)


def scoped(app: App, req: R) -> R:
    """The request with its filter limited to the loaded model's vectors."""
    return req.model_copy(update={"filter": app.in_model_space(req.filter)})


router = Router(tag="similar")


@router.endpoint("tracks.similar", "GET", "/tracks/{track_id}/similar", errors=(400, 404, 503))
async def similar(app: App, req: SimilarRequest) -> SearchResponse:
    """Tracks similar to one track (query: limit, collection auto|text|audio)."""
    return await sim.similar(app, scoped(app, req))


@router.endpoint(
    "tracks.similar-filtered", "POST", "/tracks/{track_id}/similar", errors=(400, 404, 503)
)
async def similar_filtered(app: App, req: SimilarRequest) -> SearchResponse:
    """Tracks similar to one track, with a SearchFilter in the body."""
    return await sim.similar(app, scoped(app, req))


@router.endpoint("tracks.similar-multi", "POST", "/tracks/similar", errors=(400, 404, 503))
async def similar_multi(app: App, req: MultiSimilarRequest) -> SearchResponse:
    """Tracks like several seeds and unlike the negative ones."""
    return await sim.similar_multi(app, scoped(app, req))


@router.endpoint("radio.next", "POST", "/radio/next", errors=(400, 404, 503))
async def radio_next(app: App, req: RadioRequest) -> SearchResponse:
    """Next tracks for a radio queue: no repeated tracks, rested artists."""
    return await sim.radio(app, scoped(app, req))
