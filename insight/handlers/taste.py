"""Taste profiles and personalised recommendations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import NotFound
from insight.handlers.similar import scoped
from insight.schemas import (
    ComputeProfileRequest,
    ComputeProfileResponse,
    DeletedResponse,
    ProfileRequest,
    RecommendRequest,
    RecommendResponse,
    TasteProfile,
    TasteVectorResponse,
    UserRef,
)
from insight.taste import store as profiles
from insight.taste.compute import compute_profiles
from insight.taste.recommend import recommend as run_recommend

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="taste")


@router.endpoint(
    "users.profile.compute",
    "POST",
    "/users/{user_id}/profile/compute",
    body="optional",
    errors=(400, 404, 503),
)
async def compute(app: App, req: ComputeProfileRequest) -> ComputeProfileResponse:
    """Compute taste profiles from interactions, or from the recorded history (no body)."""
    return await compute_profiles(app, req)


@router.endpoint(
    "users.recommend", "POST", "/users/{user_id}/recommend", body="optional", errors=(400, 404, 503)
)
async def recommend(app: App, req: RecommendRequest) -> RecommendResponse:
    """Personalised recommendations from a stored taste profile."""
    return await run_recommend(app, scoped(app, req))


@router.endpoint(
    "users.profile.vector", "GET", "/users/{user_id}/profile/vector", errors=(400, 404, 503)
)
async def vector(app: App, req: ProfileRequest) -> TasteVectorResponse:
    """A stored taste vector (query ``profile_type``: global, mood:<id>, distaste)."""
    store = app.require_store()
    kind = (
        req.profile_type
        if req.profile_type == profiles.DISTASTE
        else profiles.check_kind(req.profile_type)
    )
    found = (await profiles.load(store, req.user_id, [kind])).get(kind)
    if found is None:
        raise NotFound(
            f"no {kind} taste profile for user {req.user_id!r}: compute one with "
            f"POST /api/v1/users/{req.user_id}/profile/compute"
        )
    p = found.payload
    return TasteVectorResponse(
        profile=TasteProfile(
            user_id=req.user_id,
            profile_type=kind,
            embedding=found.vector.tolist(),
            track_count=int(p.get("track_count", 0)),
            confidence=float(p.get("confidence", 0.0)),
            updated_at=int(p.get("updated_at", 0)),
        )
    )


@router.endpoint(
    "users.profile.delete", "DELETE", "/users/{user_id}/profile", body="optional", errors=(400, 503)
)
async def delete_one(app: App, req: ProfileRequest) -> DeletedResponse:
    """Delete one profile (``global`` also drops the distaste; ``mood`` all mood profiles)."""
    store = app.require_store()
    kind = req.profile_type
    if kind == "all":
        kinds = await profiles.kinds_of(store, req.user_id)
    elif kind == "mood":
        kinds = [k for k in await profiles.kinds_of(store, req.user_id) if profiles.is_mood_kind(k)]
    elif kind == profiles.DISTASTE:
        kinds = [profiles.DISTASTE]
    elif kind == profiles.GLOBAL:
        kinds = [profiles.GLOBAL, profiles.DISTASTE]
    else:
        kinds = [profiles.check_kind(kind)]
    gone = await profiles.delete(store, req.user_id, kinds)
    if not gone:
        return DeletedResponse(deleted=False, message=f"No {kind} profile for user {req.user_id}")
    return DeletedResponse(deleted=True, message=f"Deleted {kind} profile for user {req.user_id}")


@router.endpoint("users.profiles.delete", "DELETE", "/users/{user_id}/profiles", errors=(503,))
async def delete_all(app: App, req: UserRef) -> DeletedResponse:
    """Delete every profile of a user."""
    store = app.require_store()
    gone = await profiles.delete(store, req.user_id, await profiles.kinds_of(store, req.user_id))
    return DeletedResponse(
        deleted=bool(gone),
        message=f"Deleted all profiles for user {req.user_id} ({len(gone)})",
    )
