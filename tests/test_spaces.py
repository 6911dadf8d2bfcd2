"""Model spaces: each model's collections have its dimension; switching needs no new data dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.file import FileStore
from insight.storage.spaces import space_key, space_prefix
from insight.testing.tiny_clap import build_tiny_clap
from tests.conftest import Running, make_settings, start_running, stop_running
from tests.test_storage_contract import BACKENDS, DIM, make


def unit(seed: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_space_keys_are_per_model_and_dimension() -> None:
    a = space_key("laion/clap-htsat-unfused", 512)
    assert a.startswith("m-laion-clap-htsat-unfused-") and a.endswith("-d512")
    assert space_key("laion/clap-htsat-unfused", 1024) != a
    assert space_key("laion/clap_htsat_unfused", 512) != a  # same slug, other id
    assert space_prefix("", "") == "" and space_prefix("p", "") == "p"
    assert space_prefix("p", a) == f"p_{a}"


async def test_fresh_data_dir_loads_a_1024_d_model(tmp_path: Path) -> None:
    """The bug: the store opened at 512-d before the model was known refused a 1024-d model."""
    big = build_tiny_clap(tmp_path / "big", dim=1024)
    r = await start_running(make_settings(tmp_path / "data", big))
    try:
        status, health = await r.api.call("GET", "/health")
        assert status == 200 and health["status"] == "healthy"
        assert r.app.require_pool().model.dim == 1024 and r.app.require_store().dim == 1024
        status, found = await r.api.call("POST", "/embed/text", {"text": "calm piano"})
        assert status == 200 and len(found["embedding"]) == 1024
        status, spaces = await r.api.call("GET", "/storage/spaces")
        assert [(s["space"], s["dim"], s["current"]) for s in spaces["spaces"]] == [
            ("default", 1024, True)
        ]
    finally:
        await stop_running(r)


async def test_switch_to_another_dimension_and_back(running: Running, tmp_path: Path) -> None:
    app = running.app
    first = app.require_pool().model.model_id
    old = unit(1, 512)
    await app.require_store().upsert(
        TRACKS_AUDIO, [Point("t512", old, {"track_id": "t512", "model_id": first})]
    )

    small = build_tiny_clap(tmp_path / "small", dim=256, seed=3)
    await app.load_model(small, "org/small-clap")
    assert app.require_pool().model.dim == 256 and app.require_store().dim == 256
    new = unit(2, 256)
    await app.require_store().upsert(
        TRACKS_AUDIO, [Point("t256", new, {"track_id": "t256", "model_id": "org/small-clap"})]
    )
    status, found = await running.api.call(
        "POST", "/tracks/search", {"embedding": new.tolist(), "collection": "audio"}
    )
    assert status == 200 and [h["track_id"] for h in found["results"]] == ["t256"]
    status, listed = await running.api.call("GET", "/storage/spaces")
    spaces = {s["space"]: s for s in listed["spaces"]}
    key = space_key("org/small-clap", 256)
    assert set(spaces) == {"default", key}
    assert spaces[key]["current"] and spaces[key]["counts"][TRACKS_AUDIO] == 1
    assert spaces["default"]["dim"] == 512 and spaces["default"]["counts"][TRACKS_AUDIO] == 1
    # the track the new space lacks is what re-embedding has to do
    assert [p.key for p in await app.spaces.missing(TRACKS_AUDIO)] == ["t512"]

    status, err = await running.api.call("DELETE", f"/storage/spaces/{key}")
    assert status == 409 and err["error"]["code"] == "CONFLICT"

    await app.load_model(app.configured_model_dir(), first)  # back: the old space answers
    assert app.require_store().dim == 512
    status, found = await running.api.call(
        "POST", "/tracks/search", {"embedding": old.tolist(), "collection": "audio"}
    )
    assert status == 200 and [h["track_id"] for h in found["results"]] == ["t512"]

    status, dropped = await running.api.call("DELETE", f"/storage/spaces/{key}")
    assert status == 200 and dropped["dim"] == 256 and dropped["model_id"] == "org/small-clap"
    status, listed = await running.api.call("GET", "/storage/spaces")
    assert [s["space"] for s in listed["spaces"]] == ["default"]
    status, err = await running.api.call("DELETE", f"/storage/spaces/{key}")
    assert status == 404
    # dropped for real: loading the model again finds an empty space of its own
    await app.load_model(small, "org/small-clap")
    assert await app.require_store().count(TRACKS_AUDIO) == 0


async def test_existing_data_dir_keeps_its_vectors(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A data dir of the layout before spaces (unkeyed collections) opens with its vectors."""
    data = tmp_path / "data"
    legacy = FileStore(data, 512)
    await legacy.open()
    vectors = {f"k{i}": unit(10 + i, 512) for i in range(5)}
    await legacy.upsert(
        TRACKS_TEXT,
        [Point(k, v, {"track_id": k, "model_id": "insight/tiny-clap"}) for k, v in vectors.items()],
    )
    await legacy.close()

    r = await start_running(make_settings(data, tiny_model_dir))
    try:
        store = r.app.require_store()
        assert store.prefix == ""  # type: ignore[attr-defined]  # the same collections
        got = await store.get(TRACKS_TEXT, list(vectors), with_vectors=True)
        assert [p.key for p in got] == list(vectors)
        for p in got:
            assert p.vector is not None and np.allclose(p.vector, vectors[p.key], atol=1e-6)
        status, found = await r.api.call(
            "POST", "/tracks/search", {"embedding": vectors["k3"].tolist(), "collection": "text"}
        )
        assert status == 200 and found["results"][0]["track_id"] == "k3"
        status, listed = await r.api.call("GET", "/storage/spaces")
        assert [(s["space"], s["current"]) for s in listed["spaces"]] == [("default", True)]
    finally:
        await stop_running(r)
    assert not [p for p in data.iterdir() if p.name.startswith("m-")]  # no space was made


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_space_is_a_prefix_and_drops_in_both_backends(kind: str, tmp_path: Path) -> None:
    prefix = space_prefix("", space_key("org/m", 8))
    store = make(kind, tmp_path, prefix)
    await store.open()
    try:
        await store.upsert(TRACKS_TEXT, [Point("a", unit(1, DIM), {"track_id": "a"})])
        assert await store.count(TRACKS_TEXT) == 1
        if kind == "qdrant":
            dropped = await store.drop_collections()  # type: ignore[attr-defined]
            assert f"{prefix}_{TRACKS_TEXT}" in dropped
            await store.open()  # made again, empty
            assert await store.count(TRACKS_TEXT) == 0
    finally:
        await store.close()
    if kind == "file":
        from insight.storage.file_drop import drop_file_collections

        names = [f"{prefix}_{TRACKS_TEXT}", f"{prefix}_{TRACKS_AUDIO}"]
        assert drop_file_collections(tmp_path / "data", prefix, names) == names[:1]
        again = make(kind, tmp_path, prefix)
        await again.open()
        try:
            assert await again.count(TRACKS_TEXT) == 0
        finally:
            await again.close()


async def test_concurrent_reads_of_old_spaces_open_each_once(tmp_path: Path) -> None:
    """A stale count and a space listing at once: each old space is opened once (two opens of
    one file space would fight over its lock)."""
    import asyncio

    from insight.config import StorageSettings
    from insight.storage.spaces import Spaces

    spaces = Spaces(StorageSettings(data_dir=tmp_path / "data"))
    await spaces.open_initial()
    try:
        for i, dim in enumerate((64, 32, 48)):
            store = await spaces.for_model(f"org/m{i}", dim)
            await store.upsert(TRACKS_TEXT, [Point(f"k{i}", unit(i, dim), {"track_id": f"k{i}"})])
        await spaces.for_model("org/m0", 64)  # back to the first: two old spaces
        await spaces.close()
        spaces = Spaces(StorageSettings(data_dir=tmp_path / "data"))
        await spaces.open_initial()  # only the current one is open again
        missing, described = await asyncio.gather(spaces.missing(TRACKS_TEXT), spaces.describe())
        assert sorted(p.key for p in missing) == ["k1", "k2"]
        assert sorted((d["dim"], d["counts"][TRACKS_TEXT]) for d in described) == [
            (32, 1),
            (48, 1),
            (64, 1),
        ]
    finally:
        await spaces.close()


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_collection_of_another_dimension_is_a_dimension_mismatch(
    kind: str, tmp_path: Path
) -> None:
    """What tells the spaces that the default collections belong to a model of another size."""
    from insight.errors import DimensionMismatch
    from insight.storage.qdrant import QdrantStore

    def store(dim: int) -> FileStore | QdrantStore:
        if kind == "file":
            return FileStore(tmp_path / "data", dim)
        return QdrantStore(dim, path=tmp_path / "qdrant")

    first = store(16)
    await first.open()
    await first.upsert(TRACKS_TEXT, [Point("a", unit(1, 16), {"track_id": "a"})])
    await first.close()
    second = store(8)
    with pytest.raises(DimensionMismatch, match="16-d"):
        await second.open()
    await second.close()
