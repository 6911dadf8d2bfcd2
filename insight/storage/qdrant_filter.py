"""How the Qdrant backend stores filterable fields and turns a :class:`Where` into a filter.

Qdrant matches keywords exactly, so lower-cased copies of the case-insensitive fields are
stored beside the payload (and stripped from what callers get back); the key is stored as
``_key`` because point ids are uuids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from insight.storage.where import Where, fold, str_list

if TYPE_CHECKING:
    from collections.abc import Callable

    from qdrant_client import models

# Extra payload fields stored for filtering; never returned to callers.
KEY_FIELD = "_key"
ARTISTS_LC = "artists_lc"
GENRES_LC = "genres_lc"
ALBUM_LC = "album_lc"
MUSICAL_KEY_LC = "key_lc"
INTERNAL_FIELDS = frozenset({KEY_FIELD, ARTISTS_LC, GENRES_LC, ALBUM_LC, MUSICAL_KEY_LC})


def folded_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """Lower-cased copies of the case-insensitive fields (stored next to the payload)."""
    album, key = payload.get("album"), payload.get("key")
    return {
        ARTISTS_LC: [fold(a) for a in str_list(payload.get("artists"))],
        GENRES_LC: [fold(g) for g in str_list(payload.get("genres"))],
        ALBUM_LC: fold(album) if isinstance(album, str) else None,
        MUSICAL_KEY_LC: fold(key) if isinstance(key, str) else None,
    }


def public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in INTERNAL_FIELDS}


def to_qdrant(w: Where | None, point_id: Callable[[str], Any]) -> models.Filter | None:
    """``w`` as a Qdrant filter (``point_id`` maps an excluded key to its id)."""
    if w is None:
        return None
    from qdrant_client import models as m

    must: list[Any] = []
    must_not: list[Any] = []
    for field, values in (
        (ARTISTS_LC, w.artists),
        (GENRES_LC, w.genres),
        ("moods", w.moods),
        (MUSICAL_KEY_LC, w.keys),
    ):
        if values is not None:
            must.append(m.FieldCondition(key=field, match=m.MatchAny(any=sorted(values))))
    for field, value in ((ALBUM_LC, w.album), ("model_id", w.model_id)):
        if value is not None:
            must.append(m.FieldCondition(key=field, match=m.MatchValue(value=value)))
    for field, bounds in (("valence", w.valence), ("arousal", w.arousal), ("bpm", w.bpm)):
        if bounds is not None:
            must.append(m.FieldCondition(key=field, range=m.Range(gte=bounds[0], lte=bounds[1])))
    if w.exclude_ids:
        must_not.append(m.HasIdCondition(has_id=[point_id(k) for k in sorted(w.exclude_ids)]))
    if w.exclude_moods:
        ex = sorted(w.exclude_moods)
        must_not.append(m.FieldCondition(key="moods", match=m.MatchAny(any=ex)))
        must_not.append(m.FieldCondition(key="primary_mood", match=m.MatchAny(any=ex)))
    return m.Filter(must=must or None, must_not=must_not or None)


def where_to_qdrant(where: dict[str, Any] | None) -> models.Filter | None:
    """``scroll(where=...)``'s field equality as a Qdrant filter."""
    if not where:
        return None
    from qdrant_client import models as m

    return m.Filter(
        must=[m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in where.items()]
    )
