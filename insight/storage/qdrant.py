"""Qdrant store (``INSIGHT_STORAGE__MODE=qdrant``) over ``qdrant_client.AsyncQdrantClient``.

Point ids are ``uuid5(NAMESPACE_OID, key)`` like the original sidecar; the key is also stored as
``_key`` (older points, written by the original, only have ``track_id`` and stay readable).
Lower-cased copies of artists / genres / album are stored for case-insensitive filters and
stripped from what callers get back. Any failure to reach the server is ``StorageNotReady``
naming the URL.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from insight.errors import BadRequest, DimensionMismatch, InsightError, StorageNotReady
from insight.storage.base import COLLECTIONS, Point, ScoredPoint, StoreStats, point_id
from insight.storage.common import check_key, check_limit, full_name
from insight.storage.qdrant_filter import (
    ALBUM_LC,
    ARTISTS_LC,
    GENRES_LC,
    KEY_FIELD,
    MUSICAL_KEY_LC,
    folded_fields,
    public_payload,
    to_qdrant,
    where_to_qdrant,
)
from insight.storage.where import Where
from insight.vectors import checked

log = logging.getLogger(__name__)
T = TypeVar("T")

KEYWORD_INDEXES: tuple[str, ...] = (
    KEY_FIELD,
    "track_id",
    ARTISTS_LC,
    GENRES_LC,
    ALBUM_LC,
    "moods",
    "primary_mood",
    "user_id",
    "model_id",
    MUSICAL_KEY_LC,
)
FLOAT_INDEXES = ("valence", "arousal", "bpm")


def _key_of(payload: dict[str, Any] | None, pid: Any) -> str | None:
    payload = payload or {}
    key = payload.get(KEY_FIELD)
    if isinstance(key, str):
        return key
    track_id = payload.get("track_id")  # written by the original sidecar
    return track_id if isinstance(track_id, str) else None


class QdrantStore:
    """Qdrant backend; ``location=":memory:"`` or ``path=`` use qdrant-client's local mode."""

    mode = "qdrant"

    def __init__(
        self,
        dim: int,
        url: str = "http://localhost:6334",
        api_key: str | None = None,
        prefix: str = "",
        *,
        location: str | None = None,
        path: str | Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.dim = dim
        self.url = url
        self.api_key = api_key
        self.prefix = prefix
        self.location = location
        self.path = str(path) if path is not None else None
        self.timeout = timeout
        self._client: Any = None
        self._ready: set[str] = set()

    @property
    def where(self) -> str:
        if self.location is not None:
            return f"qdrant local mode ({self.location})"
        if self.path is not None:
            return f"qdrant local mode ({self.path})"
        return f"Qdrant at {self.url}"

    def _make_client(self) -> Any:
        try:
            from qdrant_client import AsyncQdrantClient
        except ImportError as e:  # pragma: no cover - depends on the install
            raise StorageNotReady(
                "qdrant mode needs qdrant-client: pip install 'insight[qdrant]'"
            ) from e
        if self.location is not None:
            return AsyncQdrantClient(location=self.location)
        if self.path is not None:
            return AsyncQdrantClient(path=self.path)
        port = urlparse(self.url).port
        return AsyncQdrantClient(
            url=self.url,
            api_key=self.api_key,
            prefer_grpc=port == 6334,
            timeout=int(self.timeout),
            check_compatibility=False,  # a version probe would delay (and warn at) every start
        )

    async def _call(self, aw: Awaitable[T]) -> T:
        """Await a client call; connection-level failures become StorageNotReady."""
        try:
            return await aw
        except InsightError:
            raise
        except Exception as e:
            from qdrant_client.http.exceptions import UnexpectedResponse

            if isinstance(e, UnexpectedResponse) and 400 <= (e.status_code or 0) < 500:
                raise BadRequest(f"{self.where} rejected the request: {e}") from e
            if isinstance(e, ValueError | KeyError | TypeError) and self._local:
                raise BadRequest(f"{self.where} rejected the request: {e}") from e
            raise StorageNotReady(f"{self.where} is unreachable or failing: {e}") from e

    @property
    def _local(self) -> bool:
        return self.location is not None or self.path is not None

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is None:
            self._client = self._make_client()
        try:
            for name in COLLECTIONS:
                await self._ensure(name)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        self._ready.clear()
        if client is not None:
            try:
                await client.close()
            except Exception as e:  # closing a dead connection must not fail shutdown
                log.debug("storage: qdrant close failed: %s", e)

    def _cl(self) -> Any:
        if self._client is None:
            raise StorageNotReady(f"{self.where}: store is not open")
        return self._client

    async def _ensure(self, logical: str) -> str:
        """Create the collection (cosine, ``dim``) and its payload indexes when missing."""
        name = full_name(self.prefix, logical)
        if name in self._ready:
            return name
        from qdrant_client import models as m

        client = self._cl()
        if await self._call(client.collection_exists(name)):
            info = await self._call(client.get_collection(name))
            size = _vector_size(info.config.params.vectors)
            if size is not None and size != self.dim:
                raise DimensionMismatch(
                    f"{self.where}: collection {name!r} holds {size}-d vectors but the model "
                    f"gives {self.dim}-d; use another INSIGHT_STORAGE__COLLECTION_PREFIX or "
                    "re-embed the library"
                )
        else:
            await self._call(
                client.create_collection(
                    name, vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE)
                )
            )
            if self._local:  # local mode has no payload indexes (and warns about them)
                self._ready.add(name)
                return name
            for field in KEYWORD_INDEXES:
                await self._call(
                    client.create_payload_index(name, field, m.PayloadSchemaType.KEYWORD)
                )
            for field in FLOAT_INDEXES:
                await self._call(
                    client.create_payload_index(name, field, m.PayloadSchemaType.FLOAT)
                )
        self._ready.add(name)
        return name

    async def _existing(self, logical: str) -> str | None:
        """The real name of a collection that exists (None: nothing stored there)."""
        name = full_name(self.prefix, logical)
        if name in self._ready:
            return name
        if await self._call(self._cl().collection_exists(name)):
            return await self._ensure(logical)
        return None

    # --- writes -----------------------------------------------------------------------------

    async def upsert(self, collection: str, points: list[Point]) -> None:
        from qdrant_client import models as m

        structs: dict[str, Any] = {}
        for p in points:
            key = check_key(p.key)
            if p.vector is None:
                raise BadRequest(f"point {key!r} has no vector")
            vec = checked(p.vector, self.dim)
            payload = {**public_payload(p.payload), **folded_fields(p.payload), KEY_FIELD: key}
            structs.pop(key, None)
            structs[key] = m.PointStruct(id=point_id(key), vector=vec.tolist(), payload=payload)
        if not structs:
            return
        name = await self._ensure(collection)
        await self._call(self._cl().upsert(name, points=list(structs.values()), wait=True))

    async def delete(self, collection: str, keys: list[str]) -> list[str]:
        from qdrant_client import models as m

        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        name = await self._existing(collection)
        if name is None or not wanted:
            return []
        found = {p.key for p in await self.get(collection, wanted)}
        present = [k for k in wanted if k in found]
        if present:
            selector = m.PointIdsList(points=[point_id(k) for k in present])
            await self._call(self._cl().delete(name, points_selector=selector, wait=True))
        return present

    # --- reads ------------------------------------------------------------------------------

    def _point(self, record: Any, with_vectors: bool) -> Point | None:
        key = _key_of(record.payload, record.id)
        if key is None:
            return None
        vec = None
        if with_vectors and record.vector is not None:
            raw = record.vector
            if isinstance(raw, dict):  # named vectors: take the unnamed/default one
                raw = raw.get("", next(iter(raw.values()), None))
            vec = np.asarray(raw, np.float32) if raw is not None else None
        return Point(key, vec, public_payload(record.payload or {}))

    async def get(
        self, collection: str, keys: list[str], with_vectors: bool = False
    ) -> list[Point]:
        name = await self._existing(collection)
        if name is None or not keys:
            return []
        ids = list(dict.fromkeys(point_id(check_key(k)) for k in keys))
        records = await self._call(
            self._cl().retrieve(name, ids=ids, with_payload=True, with_vectors=with_vectors)
        )
        by_id = {str(r.id): r for r in records}
        out = []
        for key in keys:
            rec = by_id.get(point_id(key))
            point = self._point(rec, with_vectors) if rec is not None else None
            if point is not None:
                out.append(point)
        return out

    async def exists(self, collection: str, key: str) -> bool:
        name = await self._existing(collection)
        if name is None:
            return False
        records = await self._call(
            self._cl().retrieve(
                name, ids=[point_id(check_key(key))], with_payload=False, with_vectors=False
            )
        )
        return bool(records)

    async def count(self, collection: str, where: Where | None = None) -> int:
        name = await self._existing(collection)
        if name is None:
            return 0
        flt = to_qdrant(where, point_id)
        result = await self._call(self._cl().count(name, count_filter=flt, exact=True))
        return int(result.count)

    async def search(
        self,
        collection: str,
        vector: np.ndarray,
        limit: int,
        where: Where | None = None,
    ) -> list[ScoredPoint]:
        q = checked(vector, self.dim)
        check_limit(limit)
        name = await self._existing(collection)
        if name is None or limit == 0:
            return []
        response = await self._call(
            self._cl().query_points(
                name,
                query=q.tolist(),
                limit=limit,
                query_filter=to_qdrant(where, point_id),
                with_payload=True,
                with_vectors=False,
            )
        )
        out = []
        for sp in response.points:
            key = _key_of(sp.payload, sp.id)
            if key is not None:  # the original dropped points without a track id too
                out.append(ScoredPoint(key, float(sp.score), public_payload(sp.payload or {})))
        return out

    async def scroll(
        self,
        collection: str,
        offset: str | None = None,
        limit: int = 256,
        with_vectors: bool = False,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[Point], str | None]:
        """Pages in point-id order; the offset is the point id of the next page's first point."""
        check_limit(limit)
        name = await self._existing(collection)
        if name is None or limit == 0:
            return [], None
        records, nxt = await self._call(
            self._cl().scroll(
                name,
                scroll_filter=where_to_qdrant(where),
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
        )
        points = [p for r in records if (p := self._point(r, with_vectors)) is not None]
        return points, (str(nxt) if nxt is not None else None)

    async def stats(self) -> StoreStats:
        try:
            if self._client is None:
                raise StorageNotReady(f"{self.where}: store is not open")
            counts = {name: await self.count(name) for name in COLLECTIONS}
        except InsightError as e:
            return StoreStats(mode=self.mode, connected=False, collections={}, message=e.message)
        return StoreStats(mode=self.mode, connected=True, collections=counts)

    async def drop_collections(self) -> list[str]:
        """Delete this store's collections (a model space dropped on request); their names."""
        client = self._cl()
        dropped = []
        for logical in COLLECTIONS:
            name = full_name(self.prefix, logical)
            if await self._call(client.collection_exists(name)):
                await self._call(client.delete_collection(name))
                dropped.append(name)
            self._ready.discard(name)
        return dropped


def _vector_size(vectors: Any) -> int | None:
    if vectors is None:
        return None
    if isinstance(vectors, dict):
        params = vectors.get("") or next(iter(vectors.values()), None)
        return int(params.size) if params is not None else None
    return int(vectors.size)
