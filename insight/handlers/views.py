"""What the dashboard draws: the library map and a user's recent listening."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.playlists.schemas import (
    HistoryItem,
    HistoryRequest,
    HistoryResponse,
    MapRequest,
    MapResponse,
)

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="views")


@router.endpoint("map.get", "GET", "/map", errors=(400, 503))
async def library_map(app: App, req: MapRequest) -> MapResponse:
    """A page of the 2-D library map (query: offset, limit ≤ 20000, refresh)."""
    return await app.services.map.page(req)


@router.endpoint("users.history", "GET", "/users/{user_id}/history", errors=(400, 503))
async def history(app: App, req: HistoryRequest) -> HistoryResponse:
    """A user's most recently played tracks, with plays, skips and favourite."""
    played = await app.services.history.tracks(req.user_id)
    rows = sorted(played, key=lambda r: -r.last_played)[: req.limit]
    meta = await app.services.playlists.metadata([r.track_id for r in rows])
    return HistoryResponse(
        user_id=req.user_id,
        items=[
            HistoryItem(
                track_id=r.track_id,
                play_count=r.play_count,
                skip_count=r.skip_count,
                is_favorite=r.is_favorite,
                last_played=r.last_played,
                metadata=meta.get(r.track_id),
            )
            for r in rows
        ],
    )
