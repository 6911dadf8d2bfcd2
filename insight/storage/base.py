"""The contract every vector store implements, and the pieces both backends share.

Collections are named logically (``tracks_text``, ``tracks_audio``, ``taste_profiles``); a
backend adds ``INSIGHT_STORAGE__COLLECTION_PREFIX`` itself. Point ids are the original
sidecar's ``uuid5(NAMESPACE_OID, key)`` so an existing Qdrant it filled stays readable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from insight.storage.where import Where

TRACKS_TEXT = "tracks_text"
TRACKS_AUDIO = "tracks_audio"
TASTE_PROFILES = "taste_profiles"
COLLECTIONS = (TRACKS_TEXT, TRACKS_AUDIO, TASTE_PROFILES)


def point_id(key: str) -> str:
    """Deterministic point id of a track id (or a profile key ``f"{user}::{kind}"``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, key))


def profile_key(user_id: str, profile_kind: str) -> str:
    return f"{user_id}::{profile_kind}"


@dataclass(slots=True)
class Point:
    """One stored item: ``key`` is the track id (or profile key); payload is a plain dict."""

    key: str
    vector: np.ndarray | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScoredPoint:
    key: str
    score: float
    payload: dict[str, Any]


@dataclass(slots=True)
class CollectionStats:
    name: str
    count: int


@dataclass(slots=True)
class StoreStats:
    mode: str
    connected: bool
    collections: dict[str, int]
    index_size_bytes: int | None = None
    message: str | None = None


@runtime_checkable
class VectorStore(Protocol):
    """Async store of normalised vectors with payloads, one index per collection."""

    mode: str
    dim: int

    async def open(self) -> None:
        """Connect / recover, and create the three collections if missing."""

    async def upsert(self, collection: str, points: list[Point]) -> None:
        """Insert or replace by key; durable when it returns. Vectors must have ``dim``."""

    async def get(
        self, collection: str, keys: list[str], with_vectors: bool = False
    ) -> list[Point]:
        """Points that exist, in the order of ``keys`` (missing keys are skipped)."""

    async def delete(self, collection: str, keys: list[str]) -> list[str]:
        """Delete by key; returns the keys that existed."""

    async def exists(self, collection: str, key: str) -> bool: ...

    async def search(
        self,
        collection: str,
        vector: np.ndarray,
        limit: int,
        where: Where | None = None,
    ) -> list[ScoredPoint]:
        """Top ``limit`` by cosine similarity (desc) among the points that pass ``where``;
        exactly ``limit`` when that many pass."""

    async def scroll(
        self,
        collection: str,
        offset: str | None = None,
        limit: int = 256,
        with_vectors: bool = False,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[Point], str | None]:
        """Page through a collection (optionally payload field == value); next offset or None."""

    async def count(self, collection: str, where: Where | None = None) -> int:
        """Points that pass ``where`` (all points without one), read from indexes: no
        payload travels."""

    async def stats(self) -> StoreStats: ...

    async def close(self) -> None: ...


async def scroll_pages(
    store: VectorStore,
    collection: str,
    *,
    limit: int = 256,
    with_vectors: bool = False,
    where: dict[str, Any] | None = None,
) -> AsyncIterator[list[Point]]:
    """Every page of a collection, in the store's scroll order, to its end."""
    offset: str | None = None
    while True:
        page, offset = await store.scroll(collection, offset, limit, with_vectors, where)
        yield page
        if offset is None or not page:
            return
