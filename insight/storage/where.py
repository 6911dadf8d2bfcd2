"""The store's own filter, :class:`Where`: what a search or a count is limited to.

Storage never sees the API's ``SearchFilter``; the service boundary converts it once
(``insight/search/filter.py``). Each backend evaluates a ``Where`` its own way: the file store
with masks over its in-memory table (``memtable.py``, checked against ``file_match.matches``),
Qdrant as a server-side filter (``qdrant_filter.py``). Semantics:

- artists / genres: the track has ANY of the given values, case-insensitive (``casefold``);
- album: equal, case-insensitive;
- exclude_ids: the key (track id) is not one of them;
- moods: the track's ``moods`` list contains any of them (exact);
- exclude_moods: neither ``moods`` nor ``primary_mood`` contain any of them;
- valence / arousal / bpm ranges: inclusive; a track without a numeric value is excluded;
- model_id: the payload's ``model_id`` equals it (vectors of one model's space only);
- keys: the track's musical ``key`` is any of them, case-insensitive.

An empty list means "no constraint" (as ``None``); :func:`where` builds the normalised form.

A new backend implements ``VectorStore`` (``base.py``: ``search`` and ``count`` take a
``Where``), translates it in a module of its own beside the backend, is built by ``factory.py``
and joins ``BACKENDS`` in ``tests/test_storage_contract.py``; the contract and
``tests/test_storage_filters.py`` (every field, and hypothesis against ``file_match.matches``)
then run against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Bounds = tuple[float | None, float | None]


@dataclass(frozen=True, slots=True)
class Where:
    """A normalised filter: folded strings, sets, None = no constraint."""

    artists: frozenset[str] | None = None
    genres: frozenset[str] | None = None
    album: str | None = None
    exclude_ids: frozenset[str] = frozenset()
    moods: frozenset[str] | None = None
    exclude_moods: frozenset[str] = frozenset()
    valence: Bounds | None = None
    arousal: Bounds | None = None
    model_id: str | None = None
    bpm: Bounds | None = None
    keys: frozenset[str] | None = None


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


def _set(values: Iterable[str] | None, folded: bool = False) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(fold(v) if folded else v for v in values)


def _range(lo: float | None, hi: float | None) -> Bounds | None:
    return None if lo is None and hi is None else (lo, hi)


def where(
    *,
    artists: Iterable[str] | None = None,
    genres: Iterable[str] | None = None,
    album: str | None = None,
    exclude_ids: Iterable[str] | None = None,
    moods: Iterable[str] | None = None,
    exclude_moods: Iterable[str] | None = None,
    min_valence: float | None = None,
    max_valence: float | None = None,
    min_arousal: float | None = None,
    max_arousal: float | None = None,
    model_id: str | None = None,
    min_bpm: float | None = None,
    max_bpm: float | None = None,
    keys: Iterable[str] | None = None,
) -> Where | None:
    """The normalised filter of these constraints; None when they constrain nothing."""
    w = Where(
        artists=_set(artists, folded=True),
        genres=_set(genres, folded=True),
        album=fold(album) if album is not None else None,
        exclude_ids=frozenset(exclude_ids or ()),
        moods=_set(moods),
        exclude_moods=frozenset(exclude_moods or ()),
        valence=_range(min_valence, max_valence),
        arousal=_range(min_arousal, max_arousal),
        model_id=model_id,
        bpm=_range(min_bpm, max_bpm),
        keys=_set(keys, folded=True),
    )
    return None if w == Where() else w
