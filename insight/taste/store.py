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

from insight.errors import BadRequest
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
