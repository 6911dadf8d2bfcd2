"""``SearchFilter`` semantics shared by both backends.

One normalised form (:class:`Criteria`), one pure-python predicate over a payload dict
(:func:`matches`, the reference both backends are tested against), and its translation to a
Qdrant filter (:func:`to_qdrant`). Semantics:

- artists / genres: the track has ANY of the given values, case-insensitive (``casefold``);
- album: equal, case-insensitive;
- exclude_ids: the key (track id) is not one of them;
- moods: the track's ``moods`` list contains any of them (exact);
- exclude_moods: neither ``moods`` nor ``primary_mood`` contain any of them;
- min/max valence/arousal: inclusive; a track without a numeric value is excluded;
- model_id: the payload's ``model_id`` equals it (vectors of one model's space only);
- min/max bpm: inclusive; a track without a bpm is excluded;
- keys: the track's musical ``key`` is any of them, case-insensitive.

An empty list means "no constraint" (as ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from insight.schemas import SearchFilter

if TYPE_CHECKING:
    from qdrant_client import models

# Extra payload fields a backend stores for filtering; never returned to callers.
KEY_FIELD = "_key"
ARTISTS_LC = "artists_lc"
GENRES_LC = "genres_lc"
ALBUM_LC = "album_lc"
MUSICAL_KEY_LC = "key_lc"
INTERNAL_FIELDS = frozenset({KEY_FIELD, ARTISTS_LC, GENRES_LC, ALBUM_LC, MUSICAL_KEY_LC})


def fold(value: str) -> str:
    """Case-insensitive form of a string, the same in both backends."""
    return value.casefold()


def str_list(value: Any) -> list[str]:
    """A payload field as a list of strings (a bare string counts as one value)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [v for v in value if isinstance(v, str)]
    return []


def number(value: Any) -> float | None:
    """A payload field as a finite float, or None (bools and NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


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


@dataclass(frozen=True, slots=True)
class Criteria:
    """A ``SearchFilter`` normalised: folded strings, sets, None = no constraint."""

    artists: frozenset[str] | None = None
    genres: frozenset[str] | None = None
    album: str | None = None
    exclude_ids: frozenset[str] = frozenset()
    moods: frozenset[str] | None = None
    exclude_moods: frozenset[str] = frozenset()
    valence: tuple[float | None, float | None] | None = None
    arousal: tuple[float | None, float | None] | None = None
    model_id: str | None = None
    bpm: tuple[float | None, float | None] | None = None
    keys: frozenset[str] | None = None


def _set(values: Iterable[str] | None, folded: bool = False) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(fold(v) if folded else v for v in values)


def _range(lo: float | None, hi: float | None) -> tuple[float | None, float | None] | None:
    return None if lo is None and hi is None else (lo, hi)


def criteria(f: SearchFilter | None) -> Criteria | None:
    """Normalise a filter; None when it constrains nothing."""
    if f is None:
        return None
    c = Criteria(
        artists=_set(f.artists, folded=True),
        genres=_set(f.genres, folded=True),
        album=fold(f.album) if f.album is not None else None,
        exclude_ids=frozenset(f.exclude_ids or ()),
        moods=_set(f.moods),
        exclude_moods=frozenset(f.exclude_moods or ()),
        valence=_range(f.min_valence, f.max_valence),
        arousal=_range(f.min_arousal, f.max_arousal),
        model_id=f.model_id,
        bpm=_range(f.min_bpm, f.max_bpm),
        keys=_set(f.keys, folded=True),
    )
    return None if c == Criteria() else c


def _in_range(value: Any, bounds: tuple[float | None, float | None]) -> bool:
    x = number(value)
    if x is None:
        return False
    lo, hi = bounds
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def matches(key: str, payload: dict[str, Any], c: Criteria | None) -> bool:
    """The reference predicate: does the point ``key`` with ``payload`` pass ``c``?"""
    if c is None:
        return True
    if key in c.exclude_ids:
        return False
    if c.artists is not None and c.artists.isdisjoint(
        fold(a) for a in str_list(payload.get("artists"))
    ):
        return False
    if c.genres is not None and c.genres.isdisjoint(
        fold(g) for g in str_list(payload.get("genres"))
    ):
        return False
    if c.album is not None:
        album = payload.get("album")
        if not isinstance(album, str) or fold(album) != c.album:
            return False
    moods = str_list(payload.get("moods"))
    if c.moods is not None and c.moods.isdisjoint(moods):
        return False
    if c.exclude_moods and (
        not c.exclude_moods.isdisjoint(moods)
        or not c.exclude_moods.isdisjoint(str_list(payload.get("primary_mood")))
    ):
        return False
    if c.valence is not None and not _in_range(payload.get("valence"), c.valence):
        return False
    if c.model_id is not None and payload.get("model_id") != c.model_id:
        return False
    if c.bpm is not None and not _in_range(payload.get("bpm"), c.bpm):
        return False
    if c.keys is not None:
        musical_key = payload.get("key")
        if not isinstance(musical_key, str) or fold(musical_key) not in c.keys:
            return False
    return c.arousal is None or _in_range(payload.get("arousal"), c.arousal)


def where_matches(payload: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """``scroll(where=...)``: every field equals the value (a list field: contains it)."""
    if not where:
        return True
    for field, value in where.items():
        have = payload.get(field)
        if have == value:
            continue
        if isinstance(have, list) and value in have:
            continue
        return False
    return True


def to_qdrant(c: Criteria | None, point_id: Any) -> models.Filter | None:
    """The same criteria as a Qdrant filter (``point_id`` maps an excluded key to its id)."""
    if c is None:
        return None
    from qdrant_client import models as m

    must: list[Any] = []
    must_not: list[Any] = []
    if c.artists is not None:
        must.append(m.FieldCondition(key=ARTISTS_LC, match=m.MatchAny(any=sorted(c.artists))))
    if c.genres is not None:
        must.append(m.FieldCondition(key=GENRES_LC, match=m.MatchAny(any=sorted(c.genres))))
    if c.album is not None:
        must.append(m.FieldCondition(key=ALBUM_LC, match=m.MatchValue(value=c.album)))
    if c.moods is not None:
        must.append(m.FieldCondition(key="moods", match=m.MatchAny(any=sorted(c.moods))))
    if c.model_id is not None:
        must.append(m.FieldCondition(key="model_id", match=m.MatchValue(value=c.model_id)))
    if c.keys is not None:
        must.append(m.FieldCondition(key=MUSICAL_KEY_LC, match=m.MatchAny(any=sorted(c.keys))))
    for field, bounds in (("valence", c.valence), ("arousal", c.arousal), ("bpm", c.bpm)):
        if bounds is not None:
            must.append(m.FieldCondition(key=field, range=m.Range(gte=bounds[0], lte=bounds[1])))
    if c.exclude_ids:
        must_not.append(m.HasIdCondition(has_id=[point_id(k) for k in sorted(c.exclude_ids)]))
    if c.exclude_moods:
        ex = sorted(c.exclude_moods)
        must_not.append(m.FieldCondition(key="moods", match=m.MatchAny(any=ex)))
        must_not.append(m.FieldCondition(key="primary_mood", match=m.MatchAny(any=ex)))
    return m.Filter(must=must or None, must_not=must_not or None)


def where_to_qdrant(where: dict[str, Any] | None) -> models.Filter | None:
    if not where:
        return None
    from qdrant_client import models as m

    return m.Filter(
        must=[m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in where.items()]
    )
