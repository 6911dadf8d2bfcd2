"""Qdrant specifics: unreachable server, data written by the original sidecar, dimensions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models

from insight.errors import StorageNotReady
from insight.storage.base import TRACKS_TEXT, Point, point_id
from insight.storage.qdrant import QdrantStore
from insight.storage.where import where

DIM = 16


async def test_unreachable_server_is_storage_not_ready() -> None:
    store = QdrantStore(DIM, url="http://127.0.0.1:9", timeout=2)
    t = time.monotonic()
    with pytest.raises(StorageNotReady, match=r"http://127\.0\.0\.1:9"):
        await store.open()
    assert time.monotonic() - t < 10
    stats = await store.stats()
    assert not stats.connected
    assert stats.message


async def test_grpc_when_port_is_6334() -> None:
    store = QdrantStore(DIM, url="http://127.0.0.1:6334")
    client = store._make_client()
    assert client._client._prefer_grpc
    await client.close()


async def test_reads_points_written_by_the_original_sidecar() -> None:
    client = AsyncQdrantClient(location=":memory:")
    await client.create_collection(
        TRACKS_TEXT, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    v = np.eye(DIM, dtype=np.float32)
    await client.upsert(
        TRACKS_TEXT,
        points=[
            models.PointStruct(
                id=point_id(f"t{i}"),
                vector=v[i].tolist(),
                payload={"track_id": f"t{i}", "name": f"n{i}", "artists": ["A"], "genres": []},
            )
            for i in range(3)
        ],
        wait=True,
    )
    store = QdrantStore(DIM, location=":memory:")
    store._client = client
    await store.open()
    [p] = await store.get(TRACKS_TEXT, ["t1"])
    assert p.payload["name"] == "n1"
    assert [h.key for h in await store.search(TRACKS_TEXT, v[2], 1)] == ["t2"]
    hits = await store.search(TRACKS_TEXT, v[2], 5, where(exclude_ids=["t2"]))
    assert {h.key for h in hits} == {"t0", "t1"}
    # a rewrite by insight replaces the same point (same id), no duplicate
    await store.upsert(TRACKS_TEXT, [Point("t1", v[1], {"track_id": "t1", "name": "new"})])
    assert await store.count(TRACKS_TEXT) == 3
    await store.close()


async def test_existing_collection_with_other_dim_is_refused() -> None:
    client = AsyncQdrantClient(location=":memory:")
    await client.create_collection(
        TRACKS_TEXT, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE)
    )
    store = QdrantStore(DIM, location=":memory:")
    store._client = client
    with pytest.raises(StorageNotReady, match="holds 8-d vectors but the model gives 16-d"):
        await store.open()


async def test_path_mode_persists(tmp_path: Path) -> None:
    store = QdrantStore(DIM, path=tmp_path / "q")
    await store.open()
    await store.upsert(TRACKS_TEXT, [Point("a", np.ones(DIM, np.float32), {"x": 1})])
    await store.close()
    store = QdrantStore(DIM, path=tmp_path / "q")
    await store.open()
    assert (await store.get(TRACKS_TEXT, ["a"]))[0].payload == {"x": 1}
    await store.close()
