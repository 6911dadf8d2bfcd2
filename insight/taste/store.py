"""Taste profiles in the ``taste_profiles`` collection, one point per (user, kind).

Kinds: ``global``, ``mood:<id>`` and ``distaste`` (the direction of skipped/disliked tracks,
kept beside the user's profiles). Keys are ``profile_key(user, kind)`` as in the original, so a
``global`` profile it stored stays readable. Payload: user_id, profile_type, track_count,
confidence, updated_at, plus what recommendations need (anchors: the most-liked track ids;
heard: the tracks the profile was computed from, on the global profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from insight.errors import BadRequest, NotFound
from insight.storage.base import TASTE_PROFILES, Point, VectorStore, profile_key, scroll_pages
from insight.taste.profile import TasteVectors

GLOBAL = "global"
DISTASTE = "distaste"
MAX_HEARD = 5000


def is_mood_kind(kind: str) -> bool:
    return kind.startswith("mood:")


def check_kind(kind: str) -> str:
    """A kind that names one stored profile (``global`` or ``mood:<id>``)."""
    if kind == GLOBAL or (is_mood_kind(kind) and len(kind) > 5):
        return kind
    raise BadRequest(
        f"profile_type {kind!r} does not name one profile: use 'global' or 'mood:<mood id>'"
    )


@dataclass(slots=True)
class StoredProfile:
    kind: str
    vector: np.ndarray
    payload: dict[str, Any]

    @property
    def anchors(self) -> list[str]:
        return [str(a) for a in self.payload.get("anchors") or []]

    @property
    def heard(self) -> list[str]:
        return [str(a) for a in self.payload.get("heard") or []]

    @property
    def confidence(self) -> float:
        return float(self.payload.get("confidence", 0.0))


def profile_point(
    user_id: str,
    kind: str,
    tv: TasteVectors,
    now: int,
    model_id: str | None,
    heard: list[str] | None = None,
) -> Point:
    payload: dict[str, Any] = {
        "user_id": user_id,
        "profile_type": kind,
        "track_count": tv.track_count,
        "confidence": tv.confidence,
        "updated_at": now,
        "total_weight": tv.total_weight,
        "disliked_count": tv.disliked_count,
        "anchors": [t for t, _ in tv.anchors],
        "anchor_weights": [w for _, w in tv.anchors],
        "model_id": model_id,
    }
    if heard is not None:
        payload["heard"] = heard[:MAX_HEARD]
    return Point(profile_key(user_id, kind), tv.taste, payload)


def distaste_point(user_id: str, tv: TasteVectors, now: int) -> Point | None:
    if tv.distaste is None:
        return None
    payload = {
        "user_id": user_id,
        "profile_type": DISTASTE,
        "track_count": tv.disliked_count,
        "confidence": min(tv.disliked_count / (tv.disliked_count + 20.0), 1.0),
        "updated_at": now,
    }
    return Point(profile_key(user_id, DISTASTE), tv.distaste, payload)


async def load(store: VectorStore, user_id: str, kinds: list[str]) -> dict[str, StoredProfile]:
    keys = [profile_key(user_id, k) for k in kinds]
    out: dict[str, StoredProfile] = {}
    for p in await store.get(TASTE_PROFILES, keys, with_vectors=True):
        kind = str(p.payload.get("profile_type") or p.key.rsplit("::", 1)[-1])
        if isinstance(p.payload.get("profile_type"), dict):  # the original's tagged form
            kind = GLOBAL
        if p.vector is not None:
            out[kind] = StoredProfile(kind, np.asarray(p.vector, dtype=np.float32), p.payload)
    return out


async def kinds_of(store: VectorStore, user_id: str) -> list[str]:
    """Every stored kind of a user's profiles (distaste included)."""
    kinds: list[str] = []
    async for page in scroll_pages(store, TASTE_PROFILES, where={"user_id": user_id}):
        for p in page:
            pt = p.payload.get("profile_type")
            kinds.append(GLOBAL if isinstance(pt, dict) else str(pt or p.key.rsplit("::", 1)[-1]))
    return kinds


async def delete(store: VectorStore, user_id: str, kinds: list[str]) -> list[str]:
    keys = [profile_key(user_id, k) for k in kinds]
    gone = await store.delete(TASTE_PROFILES, keys) if keys else []
    return [k.rsplit("::", 1)[-1] for k in gone]


async def load_one(store: VectorStore, user_id: str, profile_type: str) -> StoredProfile:
    """One stored profile (``global``, ``mood:<id>`` or ``distaste``), or NotFound saying how
    to make it."""
    kind = profile_type if profile_type == DISTASTE else check_kind(profile_type)
    found = (await load(store, user_id, [kind])).get(kind)
    if found is None:
        raise NotFound(
            f"no {kind} taste profile for user {user_id!r}: compute one with "
            f"POST /api/v1/users/{user_id}/profile/compute"
        )
    return found


async def delete_kind(store: VectorStore, user_id: str, profile_type: str) -> list[str]:
    """Delete what ``profile_type`` names: ``all``, ``mood`` (every mood profile), ``distaste``,
    ``global`` (with its distaste) or one ``mood:<id>``; the kinds that existed."""
    if profile_type == "all":
        kinds = await kinds_of(store, user_id)
    elif profile_type == "mood":
        kinds = [k for k in await kinds_of(store, user_id) if is_mood_kind(k)]
    elif profile_type == DISTASTE:
        kinds = [DISTASTE]
    elif profile_type == GLOBAL:
        kinds = [GLOBAL, DISTASTE]
    else:
        kinds = [check_kind(profile_type)]
    return await delete(store, user_id, kinds)
