"""``profile/compute``: interactions (given, or the recorded history) → stored profiles."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from insight.errors import BadRequest, NotFound
from insight.schemas import ComputeProfileRequest, ComputeProfileResponse, ProfileSummary
from insight.storage.base import TASTE_PROFILES, Point
from insight.taste import store as profiles
from insight.taste.profile import (
    MIN_MOOD_TRACKS,
    TasteVectors,
    build_profile,
    mood_groups,
    track_weights,
)
from insight.taste.tracks import track_views

if TYPE_CHECKING:
    from insight.app import App
    from insight.history import ListeningHistory
    from insight.schemas import UserInteraction


def history_of(app: App) -> ListeningHistory:
    return app.services.history


async def interactions_from_history(
    app: App, user_id: str, cutoff_days: float, now: float
) -> list[UserInteraction]:
    from insight.schemas import UserInteraction

    history = history_of(app)
    if not await history.has_user(user_id):
        raise NotFound(
            f"no listening history recorded for user {user_id!r}: send 'interactions' in the "
            "body, or let playback events for this user reach the bus first"
        )
    rows = await history.tracks(user_id, since=int(now - cutoff_days * 86_400))
    return [
        UserInteraction(
            track_id=h.track_id,
            play_count=h.play_count,
            skip_count=h.skip_count,
            is_favorite=h.is_favorite,
            last_played=h.last_played or None,
        )
        for h in rows
    ]


def _summary(kind: str, tv: TasteVectors, now: int) -> ProfileSummary:
    return ProfileSummary(
        profile_type=kind, track_count=tv.track_count, confidence=tv.confidence, updated_at=now
    )


async def compute_profiles(app: App, req: ComputeProfileRequest) -> ComputeProfileResponse:
    if req.profile_type == profiles.DISTASTE:
        raise BadRequest(
            "the distaste profile is computed with the global one: use profile_type 'global'"
        )
    store = app.require_store()
    settings = app.settings.taste
    now = time.time()
    cutoff = float(req.cutoff_days or settings.cutoff_days)
    from_history = req.interactions is None
    if req.interactions is None:
        interactions = await interactions_from_history(app, req.user_id, cutoff, now)
    elif not req.interactions:
        raise BadRequest(
            "'interactions' is empty: send at least one play, skip or favorite, or omit the "
            "body to use the recorded listening history"
        )
    else:
        interactions = req.interactions
    weights = track_weights(interactions, now, settings.half_life_days, cutoff)
    if not weights:
        raise BadRequest(
            f"no usable interactions within the last {cutoff:g} days (cutoff_days): every "
            "interaction is older, or plays and skips cancel out"
        )
    views = await track_views(store, list(weights))
    missing = sorted(t for t in weights if t not in views)
    if not views:
        raise BadRequest(
            f"none of the {len(weights)} tracks has an embedding; store them first "
            "(POST /tracks/embed-text, /tracks/upsert or a stream) and compute again"
        )
    vectors = {t: v.vector for t, v in views.items()}
    kind = req.profile_type
    stamp = int(now)
    model_id = app.pool.model.model_id if app.pool is not None else None
    heard = sorted(views, key=lambda t: -abs(weights[t]))
    glob = build_profile(weights, vectors, "tracks")
    points: list[Point] = []
    summaries: list[ProfileSummary] = []
    stale: list[str] = []
    if kind in ("all", profiles.GLOBAL):
        points.append(
            profiles.profile_point(req.user_id, profiles.GLOBAL, glob, stamp, model_id, heard)
        )
        summaries.append(_summary(profiles.GLOBAL, glob, stamp))
        dp = profiles.distaste_point(req.user_id, glob, stamp)
        if dp is not None:
            points.append(dp)
        else:
            stale.append(profiles.DISTASTE)
    if kind == "all" or kind.startswith("mood"):
        groups = mood_groups(weights, {t: v.primary_mood for t, v in views.items()})
        wanted = [kind[5:]] if profiles.is_mood_kind(kind) else sorted(groups)
        if profiles.is_mood_kind(kind) and kind[5:] not in groups:
            raise BadRequest(
                f"not enough liked tracks with primary mood {kind[5:]!r} (need "
                f"{MIN_MOOD_TRACKS}, with embeddings and a stored mood) to build a mood profile"
            )
        for mood in wanted:
            tv = build_profile(groups[mood], vectors, f"{mood} tracks")
            mk = f"mood:{mood}"
            points.append(profiles.profile_point(req.user_id, mk, tv, stamp, model_id))
            summaries.append(_summary(mk, tv, stamp))
        if not profiles.is_mood_kind(kind):  # a full recompute drops moods no longer liked
            existing = await profiles.kinds_of(store, req.user_id)
            stale += [k for k in existing if profiles.is_mood_kind(k) and k[5:] not in groups]
    await store.upsert(TASTE_PROFILES, points)
    if stale:
        await profiles.delete(store, req.user_id, stale)
    history = history_of(app)
    if from_history:
        await history.clear_stale(req.user_id)
    return ComputeProfileResponse(user_id=req.user_id, profiles=summaries, missing_tracks=missing)


def summary_of(payload: dict[str, Any], kind: str) -> ProfileSummary:
    return ProfileSummary(
        profile_type=kind,
        track_count=int(payload.get("track_count", 0)),
        confidence=float(payload.get("confidence", 0.0)),
        updated_at=int(payload.get("updated_at", 0)),
    )
