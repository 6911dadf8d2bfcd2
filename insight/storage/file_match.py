"""The file store's payload predicates, one payload at a time.

:func:`matches` is the reference meaning of a :class:`Where` (the memtable's masks must agree
with it; the storage contract test holds both backends to it); :func:`where_matches` is
``scroll(where=...)``'s field equality.
"""

from __future__ import annotations

from typing import Any

from insight.storage.where import Bounds, Where, fold, number, str_list


def _in_range(value: Any, bounds: Bounds) -> bool:
    x = number(value)
    if x is None:
        return False
    lo, hi = bounds
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def _any_folded(values: frozenset[str], field: Any) -> bool:
    return not values.isdisjoint(fold(v) for v in str_list(field))


def _folded(value: Any) -> str | None:
    return fold(value) if isinstance(value, str) else None


def matches(key: str, payload: dict[str, Any], w: Where | None) -> bool:
    """Does the point ``key`` with ``payload`` pass ``w``?"""
    if w is None:
        return True
    if key in w.exclude_ids:
        return False
    if w.artists is not None and not _any_folded(w.artists, payload.get("artists")):
        return False
    if w.genres is not None and not _any_folded(w.genres, payload.get("genres")):
        return False
    if w.album is not None and _folded(payload.get("album")) != w.album:
        return False
    moods = str_list(payload.get("moods"))
    if w.moods is not None and w.moods.isdisjoint(moods):
        return False
    if w.exclude_moods and (
        not w.exclude_moods.isdisjoint(moods)
        or not w.exclude_moods.isdisjoint(str_list(payload.get("primary_mood")))
    ):
        return False
    if w.model_id is not None and payload.get("model_id") != w.model_id:
        return False
    if w.keys is not None and _folded(payload.get("key")) not in w.keys:
        return False
    for bounds, field in ((w.valence, "valence"), (w.arousal, "arousal"), (w.bpm, "bpm")):
        if bounds is not None and not _in_range(payload.get(field), bounds):
            return False
    return True


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
