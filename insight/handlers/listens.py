"""A user's listens as insight recorded them from playback events: each play or skip with its
seconds, the favorites, and the listen still open (``users.history`` shows per-track totals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.schemas import ListenedPlay, ListensRequest, ListensResponse, OpenListen

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="listens")


@router.endpoint("users.listens", "GET", "/users/{user_id}/listens", errors=(400, 503))
async def listens(app: App, req: ListensRequest) -> ListensResponse:
    """A user's plays and skips one by one, favorites, open listen (query since, limit)."""
    store = app.services.history
    plays = await store.plays(req.user_id, req.since, req.limit)
    listen = await store.open_listen(req.user_id)
    return ListensResponse(
        user_id=req.user_id,
        plays=[
            ListenedPlay(
                track_id=p.track_id,
                started_at=p.ts,
                seconds_played=p.seconds_played,
                duration=p.duration,
                fully_played=p.fully_played,
                skipped=p.skipped,
            )
            for p in plays
        ],
        play_count=sum(not p.skipped for p in plays),
        skip_count=sum(p.skipped for p in plays),
        favorites=await store.favorite_ids(req.user_id),
        listening=None
        if listen is None
        else OpenListen(
            track_id=listen.track_id,
            started_at=listen.started,
            position=listen.position,
            playing=listen.playing,
        ),
    )
