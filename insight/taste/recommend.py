"""``users/{id}/recommend``: tracks near a taste profile, away from its distaste, diversified.

Beyond the original (nearest to the profile, nothing else): the recall also searches around the
user's most-liked tracks (a taste with two sides gets both), candidates are pushed away from the
distaste direction (skips, dislikes), recently heard tracks are left out, MMR trades relevance
for variety (``diversity`` = 1 - lambda), at most ``max_per_artist`` per artist, and every result
says why (the liked track it is closest to).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from insight.errors import NotFound
from insight.library import file_paths_visible
from insight.schemas import RecommendRequest, RecommendResponse
from insight.taste import store as profiles
from insight.taste.rank import Query, Ranked, as_result, find
from insight.taste.tracks import track_views

if TYPE_CHECKING:
    from insight.app import App


def reason(r: Ranked, kind: str) -> str:
    if r.anchor is not None:
        return f"close to {r.anchor.label()}, which you like"
    if profiles.is_mood_kind(kind):
        return f"fits your {kind[5:]} taste"
    return "matches your taste profile"


async def recommend(app: App, req: RecommendRequest) -> RecommendResponse:
    store = app.require_store()
    kind = profiles.check_kind(req.profile_type)
    loaded = await profiles.load(
        store, req.user_id, list(dict.fromkeys([kind, profiles.GLOBAL, profiles.DISTASTE]))
    )
    prof = loaded.get(kind)
    if prof is None:
        raise NotFound(
            f"no {kind} taste profile for user {req.user_id!r}: compute one with "
            f"POST /api/v1/users/{req.user_id}/profile/compute"
        )
    exclude = set(req.exclude_ids)
    if req.exclude_recent:
        glob = loaded.get(profiles.GLOBAL)
        exclude |= set(prof.heard or (glob.heard if glob else []))
        history = app.services.history
        days = app.settings.taste.recent_exclude_days
        if days > 0:
            exclude |= await history.recent_track_ids(req.user_id, int(time.time() - days * 86_400))
    anchors = await track_views(store, prof.anchors)
    distaste = loaded.get(profiles.DISTASTE)
    q = Query(
        vector=prof.vector,
        anchors=[anchors[a] for a in prof.anchors if a in anchors],
        distaste=distaste.vector if distaste is not None else None,
        exclude=exclude,
        filter=req.filter,
    )
    ranked = await find(store, q, req.limit, 1.0 - req.diversity, req.max_per_artist)
    return RecommendResponse(
        tracks=[as_result(r, reason(r, kind), file_paths_visible(app)) for r in ranked],
        profile_confidence=prof.confidence,
    )
