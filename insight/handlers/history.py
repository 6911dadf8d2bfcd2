"""A user's listening history as insight recorded it from playback events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import NotReady
from insight.schemas import CurrentListen, HistoryPlay, HistoryRequest, HistoryResponse

if TYPE_CHECKING:
    from insight.app import App
    from insight.history import ListeningHistory

router = Router(tag="history")


@router.endpoint("users.history", "GET", "/users/{user_id}/history", errors=(400, 503))
async def history(app: App, req: HistoryRequest) -> HistoryResponse:
    """A user's plays, skips and favorites (query ``since``, ``limit``)."""
    store: ListeningHistory | None = app.services.get("history")
    if store is None:
        raise NotReady("no listening history in this process")
    plays = await store.plays(req.user_id, req.since, req.limit)
    listen = await store.open_listen(req.user_id)
    return HistoryResponse(
        user_id=req.user_id,
        plays=[
            HistoryPlay(
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
        else CurrentListen(
            track_id=listen.track_id,
            started_at=listen.started,
            position=listen.position,
            playing=listen.playing,
        ),
    )
