"""The library map: every track placed, clusters apart, stable, incremental, paged."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from playlist_util import store_points
from synthetic_library import Library, build, store_library, unit

from insight.mapview.layout import fit
from insight.mapview.service import MapService


@pytest.fixture
def lib() -> Library:
    return build()


async def get_map(running: Any, query: str = "") -> dict[str, Any]:
    status, r = await running.api.call("GET", f"/map{query}")
    assert status == 200, r
    return dict(r)


def purity(xy: np.ndarray, labels: list[str], k: int = 5) -> float:
    """Share of the points whose k nearest neighbours on the map are all of their cluster."""
    lab = np.array(labels)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    return float(np.mean((lab[near] == lab[:, None]).all(axis=1)))


def test_layout_is_deterministic_and_keeps_clusters_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 64)).astype(np.float32)
    labels = [i % 6 for i in range(600)]
    x = np.stack([unit(centres[c] + 0.3 * rng.standard_normal(64)) for c in labels])
    a, b = fit(x, seed=3), fit(x, seed=3)
    xy = a.place(x)
    assert np.array_equal(xy, b.place(x))
    assert np.abs(xy).max() <= 1.5
    assert purity(xy, [str(c) for c in labels]) >= 0.95
    one = a.place(x[:1])  # placing one track alone gives its place in the whole
    assert np.allclose(one, xy[:1], atol=1e-6)


async def test_map_places_every_track_and_stays_stable(running: Any, lib: Library):
    await store_library(running.app, lib)
    first = await get_map(running)
    assert first["total"] == 90 and len(first["track_ids"]) == 90
    assert sorted(first["track_ids"]) == sorted(lib.vectors)
    assert first["version"] == 1 and first["computed_at"] > 0
    xy = np.array([first["x"], first["y"]]).T
    assert np.isfinite(xy).all() and np.abs(xy).max() <= 1.5
    assert purity(xy, [lib.cluster[t] for t in first["track_ids"]]) >= 0.95
    i = first["track_ids"].index("B2-3")
    assert first["moods"][i] == "melancholic" and first["genres"][i] == "Doom"
    assert first["artists"][i] == "Artist B2" and first["names"][i] == "Song B2-3"
    assert first["valence"][i] == pytest.approx(-0.6, abs=1e-6)
    assert first["arousal"][i] == pytest.approx(-0.4, abs=1e-6)
    again = await get_map(running, "?refresh=true")
    assert again["x"] == first["x"] and again["y"] == first["y"] and again["version"] == 1
    # paging
    page = await get_map(running, "?offset=80&limit=20")
    assert page["total"] == 90 and page["track_ids"] == first["track_ids"][80:]
    assert page["x"] == first["x"][80:]
    status, err = await running.api.call("GET", "/map?limit=50000")
    assert status == 400 and "limit" in err["error"]["message"]


async def test_new_tracks_are_placed_without_moving_others(running: Any, lib: Library):
    await store_library(running.app, lib)
    first = await get_map(running)
    before = dict(zip(first["track_ids"], zip(first["x"], first["y"], strict=True), strict=True))
    rng = np.random.default_rng(9)
    extra = {
        f"NC{i}": unit(lib.centres["C"] + 0.5 * unit(rng.standard_normal(lib.dim)))
        for i in range(5)
    }
    await store_points(running.app, extra, {"artists": ["New"], "primary_mood": "peaceful"})
    second = await get_map(running, "?refresh=true")
    assert second["total"] == 95 and second["version"] == 1  # 5 new of 90: no relayout
    now = dict(zip(second["track_ids"], zip(second["x"], second["y"], strict=True), strict=True))
    assert all(now[t] == before[t] for t in before)
    c_centre = np.mean([before[t] for t in lib.ids("C")], axis=0)
    a_centre = np.mean([before[t] for t in lib.ids("A")], axis=0)
    for t in extra:
        p = np.array(now[t])
        assert np.linalg.norm(p - c_centre) < np.linalg.norm(p - a_centre)
    # deleted tracks leave the map
    await running.app.services.library.delete_track("A0-0")
    third = await get_map(running, "?refresh=true")
    assert third["total"] == 94 and "A0-0" not in third["track_ids"]
    # many new tracks (over 20 %): a full layout is redone in the background
    many = {
        f"NB{i}": unit(lib.centres["B"] + 0.5 * unit(rng.standard_normal(lib.dim)))
        for i in range(30)
    }
    await store_points(running.app, many, {"artists": ["Many"]})
    fourth = await get_map(running, "?refresh=true")
    assert fourth["total"] == 124
    for _ in range(200):
        latest = await get_map(running)
        if latest["version"] == 2 and not latest["recomputing"]:
            break
        await asyncio.sleep(0.05)
    assert latest["version"] == 2 and latest["total"] == 124


async def test_map_survives_a_restart(running: Any, lib: Library):
    await store_library(running.app, lib)
    first = await get_map(running)
    svc = running.app.services.map
    assert (svc.dir / "layout.npz").exists() and (svc.dir / "points.npz").exists()
    app = running.app  # a new service (as after a restart) reads the saved layout and points
    app.services.map = MapService(app.settings.storage.data_dir, app.loaded, app.stores, app.tasks)
    again = await get_map(running)
    assert running.app.services.map is not svc
    assert again["x"] == first["x"] and again["version"] == first["version"]
    assert again["moods"] == first["moods"]
