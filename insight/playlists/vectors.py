"""The whole library as one matrix: audio vectors where a track has one, text otherwise.

Clustering and the map need every vector at once; they read them here, page by page, limited
to the loaded model's space (two models' vectors never mix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore, scroll_pages
from insight.vectors import unit_rows

PAGE = 4096


@dataclass
class LibraryVectors:
    ids: list[str]
    matrix: np.ndarray  # [n, dim] float32, unit rows
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


async def _scroll_all(
    store: VectorStore, collection: str, with_vectors: bool, where: dict[str, Any] | None
) -> list[Any]:
    out: list[Any] = []
    async for page in scroll_pages(
        store, collection, limit=PAGE, with_vectors=with_vectors, where=where
    ):
        out.extend(page)
    return out


async def library_vectors(
    store: VectorStore, model_id: str | None, only: list[str] | None = None
) -> LibraryVectors:
    """Every track with a vector of ``model_id`` (all models when None), in key order; only
    the tracks ``only`` when given."""
    where = {"model_id": model_id} if model_id else None
    if only is None:
        audio = {p.key: p for p in await _scroll_all(store, TRACKS_AUDIO, True, where)}
        text = {p.key: p for p in await _scroll_all(store, TRACKS_TEXT, True, where)}
    else:
        audio = {p.key: p for p in await store.get(TRACKS_AUDIO, only, True) if _of(p, where)}
        text = {p.key: p for p in await store.get(TRACKS_TEXT, only, True) if _of(p, where)}
    ids = sorted(set(audio) | set(text))
    rows: list[np.ndarray] = []
    payloads: list[dict[str, Any]] = []
    kept: list[str] = []
    for key in ids:
        a, t = audio.get(key), text.get(key)
        src = a if a is not None and a.vector is not None else t
        if src is None or src.vector is None:
            continue
        kept.append(key)
        rows.append(np.asarray(src.vector, dtype=np.float32))
        payloads.append({**(a.payload if a else {}), **(t.payload if t else {})})
    dim = store.dim
    m = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return LibraryVectors(kept, unit_rows(m), payloads)


def _of(p: Any, where: dict[str, Any] | None) -> bool:
    return where is None or all(p.payload.get(k) == v for k, v in where.items())


def first_str(payload: dict[str, Any], key: str) -> str | None:
    v = payload.get(key)
    if isinstance(v, list):
        v = next((x for x in v if isinstance(x, str)), None)
    return v if isinstance(v, str) and v else None


def number(payload: dict[str, Any], key: str) -> float | None:
    v = payload.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
