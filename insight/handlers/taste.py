"""Taste profiles and personalised recommendations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
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
    found = await profiles.load_one(app.require_store(), req.user_id, req.profile_type)
    p = found.payload
    return TasteVectorResponse(
        profile=TasteProfile(
            user_id=req.user_id,
            profile_type=found.kind,
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
    kind = req.profile_type
    gone = await profiles.delete_kind(app.require_store(), req.user_id, kind)
    if not gone:
        return DeletedResponse(deleted=False, message=f"No {kind} profile for user {req.user_id}")
    return DeletedResponse(deleted=True, message=f"Deleted {kind} profile for user {req.user_id}")


@router.endpoint("users.profiles.delete", "DELETE", "/users/{user_id}/profiles", errors=(503,))
async def delete_all(app: App, req: UserRef) -> DeletedResponse:
    """Delete every profile of a user."""
    gone = await profiles.delete_kind(app.require_store(), req.user_id, "all")
    return DeletedResponse(
        deleted=bool(gone),
        message=f"Deleted all profiles for user {req.user_id} ({len(gone)})",
    )
