"""Cluster playlists: recover known clusters, stay stable, stored, exported, announced."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import numpy as np
import pytest
from playlist_util import adjusted_rand_index, store_points
from synthetic_library import Library, build, store_library, unit

from insight.bus import subjects
from insight.playlists.cluster import kmeans, match_ids


@pytest.fixture
def lib() -> Library:
    return build(artists=6, per_artist=5, seed=11)


def test_adjusted_rand_index_by_hand() -> None:
    assert adjusted_rand_index([0, 0, 1, 1], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    # the classic example: ARI 0.24242...
    truth = [0, 0, 0, 1, 1, 1]
    found = [0, 0, 1, 1, 2, 2]
    assert adjusted_rand_index(truth, found) == pytest.approx(0.242424, abs=1e-5)
    assert adjusted_rand_index([0, 1, 0, 1], [0, 0, 1, 1]) < 0.0


def test_kmeans_and_overlap_matching_are_pure() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32)
    x = np.stack([unit(centres[i % 4] + 0.2 * rng.standard_normal(16)) for i in range(80)])
    labels, cents = kmeans(x, 4, seed=1)
    assert adjusted_rand_index([i % 4 for i in range(80)], list(labels)) == pytest.approx(1.0)
    assert np.allclose(np.linalg.norm(cents, axis=1), 1.0, atol=1e-5)
    ids = [f"t{i}" for i in range(80)]
    old = {"p-x": [t for t, lab in zip(ids, labels, strict=True) if lab == 2]}
    assert match_ids(labels, ids, old, 4) == {2: "p-x"}


async def clusters(running: Any, **body: Any) -> dict[str, Any]:
    status, r = await running.api.call("POST", "/playlists/clusters", body)
    assert status == 200, r
    return dict(r)


async def memberships(running: Any, playlists: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for p in playlists:
        status, got = await running.api.call("GET", f"/playlists/{p['playlist_id']}")
        assert status == 200, got
        out.update({t: p["playlist_id"] for t in got["track_ids"]})
    return out


async def test_cluster_playlists_recover_and_keep_clusters(running: Any, lib: Library):
    await store_library(running.app, lib)
    heard: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        heard.append(msgpack.unpackb(msg.data))

    sub = await running.stack.bridge.nc.subscribe(subjects.PLAYLIST_UPDATED, cb=on_msg)
    first = await clusters(running, clusters=3)
    assert first["tracks"] == 90 and first["kept_share"] is None
    owner = await memberships(running, first["playlists"])
    assert len(owner) == 90
    truth = [lib.cluster[t] for t in sorted(owner)]
    ari = adjusted_rand_index(truth, [owner[t] for t in sorted(owner)])
    assert ari >= 0.9, ari
    names = sorted(p["name"] for p in first["playlists"])
    assert names == ["Energetic · Dance", "Melancholic · Doom", "Peaceful · Ambient"]
    assert all(p["track_count"] == 30 and p["kind"] == "cluster" for p in first["playlists"])
    # announced, one message per playlist
    for _ in range(100):
        if len(heard) >= 3:
            break
        await asyncio.sleep(0.05)
    assert sorted(h["playlist_id"] for h in heard) == sorted(set(owner.values()))
    assert {h["kind"] for h in heard} == {"cluster"} and {h["track_count"] for h in heard} == {30}
    assert {h["action"] for h in heard} == {"updated"}
    # a re-run after the library grew by 10 %: same ids, most tracks stay
    rng = np.random.default_rng(5)
    extra = {
        f"N{c}{i}": unit(lib.centres[c] + 0.5 * unit(rng.standard_normal(lib.dim)))
        for c in "ABC"
        for i in range(3)
    }
    await store_points(running.app, extra, {"artists": ["New"], "primary_mood": "happy"})
    second = await clusters(running, clusters=3)
    assert {p["playlist_id"] for p in second["playlists"]} == set(owner.values())
    again = await memberships(running, second["playlists"])
    kept = sum(again[t] == owner[t] for t in owner) / len(owner)
    assert kept >= 0.9 and second["kept_share"] == pytest.approx(kept)
    assert all(again[t] == again[f"{t[1]}0-0"] for t in extra)  # new tracks join their cluster
    await sub.unsubscribe()


async def test_playlist_store_list_get_delete_and_m3u8(running: Any, lib: Library):
    lib.payloads["A0-0"]["file_path"] = "/music/a/song.flac"
    await store_library(running.app, lib)
    made = await clusters(running, clusters=3)
    status, listed = await running.api.call("GET", "/playlists")
    assert status == 200
    assert sorted(p["playlist_id"] for p in listed["playlists"]) == sorted(
        p["playlist_id"] for p in made["playlists"]
    )
    energetic = next(p for p in made["playlists"] if p["name"].startswith("Energetic"))
    pid = energetic["playlist_id"]
    status, got = await running.api.call("GET", f"/playlists/{pid}")
    assert got["tracks"][0]["track_id"] == got["track_ids"][0]
    assert {t["primary_mood"] for t in got["tracks"]} == {"energetic"}
    status, m3u = await running.api.call("GET", f"/playlists/{pid}/m3u8")
    assert status == 200 and m3u["filename"] == "energetic-dance.m3u8"
    lines = m3u["content"].splitlines()
    assert lines[:2] == ["#EXTM3U", f"#PLAYLIST:{energetic['name']}"]
    entries = lines[3::2]
    assert len(entries) == 30 and "/music/a/song.flac" in entries
    assert set(entries) - {"/music/a/song.flac"} == set(lib.ids("A")) - {"A0-0"}
    assert "#EXTINF:-1,Artist A0 - Song A0-0" in lines
    status, gone = await running.api.call("DELETE", f"/playlists/{pid}")
    assert status == 200 and gone["deleted"] is True
    status, err = await running.api.call("GET", f"/playlists/{pid}")
    assert status == 404 and pid in err["error"]["message"]
    status, gone = await running.api.call("DELETE", f"/playlists/{pid}")
    assert status == 200 and gone["deleted"] is False
    status, err = await running.api.call("POST", "/playlists/clusters", {"clusters": 500})
    assert status == 400
    status, err = await running.api.call("POST", "/playlists/clusters", {"clusters": 100})
    assert status == 400 and "too few" in err["error"]["message"]


async def test_scheduled_refresh_reruns_keeps_ids_and_stops(running: Any, lib: Library):
    await store_library(running.app, lib)
    runs: list[dict[str, Any]] = []
    six = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        runs.append(msgpack.unpackb(msg.data))
        if len(runs) >= 6:
            six.set()

    sub = await running.stack.bridge.nc.subscribe(subjects.PLAYLIST_UPDATED, cb=on_msg)
    await clusters(running, clusters=3, refresh_interval_s=1)
    await asyncio.wait_for(six.wait(), timeout=15)  # 3 from the call, 3 from the schedule
    assert len({r["playlist_id"] for r in runs}) == 3  # the refresh keeps the ids
    svc = running.app.services.playlists
    sched = await svc.db.schedule("clusters")
    assert sched is not None and sched.interval_s == 1 and sched.params["clusters"] == 3
    await clusters(running, clusters=3, refresh_interval_s=0)  # stops the schedule
    assert await svc.db.schedule("clusters") is None
    await sub.unsubscribe()
