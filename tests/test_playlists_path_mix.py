"""Song paths and trait mixes on the synthetic library (clusters of known moods)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pytest
from playlist_util import gradient_tracks, store_points
from synthetic_library import Library, build, store_library, unit

from insight.codec import Format


@pytest.fixture(scope="module")
def lib() -> Library:
    return build()


@pytest.mark.parametrize("fmt", [Format.JSON, Format.MSGPACK])
async def test_path_moves_monotonically_from_a_to_b(running: Any, lib: Library, fmt: Format):
    await store_library(running.app, lib)
    grad = gradient_tracks(lib, 40)
    await store_points(running.app, {t: v for t, (_, v) in grad.items()}, {"artists": ["Grad"]})
    a, b = "A0-0", "B0-0"
    status, r = await running.api.call(
        "POST", "/tracks/path", {"start_id": a, "end_id": b, "steps": 10}, fmt=fmt
    )
    assert status == 200, r
    ids = [s["track_id"] for s in r["steps"]]
    assert r["count"] == 10 and ids[0] == a and ids[-1] == b
    assert len(set(ids)) == len(ids)  # no repeats
    prog = [s["progress"] for s in r["steps"]]
    assert prog[0] == 0.0 and prog[-1] == 1.0
    assert all(x < y for x, y in itertools.pairwise(prog)), prog
    # the inner steps walk the gradient in order, spread along the whole way (a step next to
    # an end may be a track of that end's own cluster)
    inner = ids[1:-1]
    on_way = [t for t in inner if t in grad]
    assert len(on_way) >= 6, inner
    assert all(t in on_way or lib.cluster[t] in "AB" for t in inner)
    fractions = [grad[t][0] for t in on_way]
    assert fractions == sorted(fractions)
    assert fractions[0] < 0.3 and fractions[-1] > 0.7
    assert max(np.diff(fractions)) < 0.3
    # what each step reports is true of its vector
    va, vb = lib.vectors[a], lib.vectors[b]
    for s in r["steps"][1:-1]:
        t = s["track_id"]
        v = grad[t][1] if t in grad else lib.vectors[t]
        p = float((v - va) @ (vb - va) / ((vb - va) @ (vb - va)))
        assert s["progress"] == pytest.approx(p, abs=1e-4)
        off = np.linalg.norm(v - va - p * (vb - va))
        assert s["line_distance"] == pytest.approx(off, abs=1e-4)
        assert 0.5 < s["target_similarity"] <= 1.0
    assert r["steps"][1]["metadata"]["name"] == f"Song {ids[1]}"


async def test_path_artist_cap_and_errors(running: Any, lib: Library):
    await store_library(running.app, lib)
    body = {"start_id": "A0-0", "end_id": "C0-0", "steps": 12, "max_per_artist": 1}
    status, r = await running.api.call("POST", "/tracks/path", body)
    assert status == 200, r
    artists = [s["metadata"]["artists"][0] for s in r["steps"]]
    assert len(set(artists)) == len(artists) == r["count"] >= 6
    prog = [s["progress"] for s in r["steps"]]
    assert prog == sorted(prog)
    status, err = await running.api.call("POST", "/tracks/path", {**body, "end_id": "nope"})
    assert status == 404 and "nope" in err["error"]["message"]
    status, err = await running.api.call("POST", "/tracks/path", {**body, "end_id": "A0-0"})
    assert status == 400 and "differ" in err["error"]["message"]
    status, err = await running.api.call("POST", "/tracks/path", {**body, "steps": 1})
    assert status == 400


async def mix(running: Any, **body: Any) -> list[dict[str, Any]]:
    status, r = await running.api.call("POST", "/mixes", body)
    assert status == 200, r
    assert r["count"] == len(r["tracks"])
    return list(r["tracks"])


async def test_mixes_respect_their_traits(running: Any, lib: Library):
    for i, t in enumerate(lib.ids("A")):  # tempo known for cluster A only
        lib.payloads[t]["tempo"] = 120.0 if i % 2 else 170.0
    await store_library(running.app, lib)
    sad = await mix(running, moods=["melancholic"], size=12, max_per_artist=2)
    assert len(sad) == 12
    assert all(lib.cluster[t["track_id"]] == "B" for t in sad)
    assert all("melancholic" in t["metadata"]["moods"] for t in sad)
    per_artist = np.unique([t["metadata"]["artists"][0] for t in sad], return_counts=True)[1]
    assert per_artist.max() <= 2 and len(per_artist) == 6  # diverse: every artist of B
    calm = await mix(running, genres=["ambient"], size=8)
    assert len(calm) == 8 and {lib.cluster[t["track_id"]] for t in calm} == {"C"}
    region = await mix(running, min_valence=0.3, max_arousal=-0.5, size=10)
    assert len(region) == 10
    for t in region:
        assert t["metadata"]["valence"] >= 0.3 and t["metadata"]["arousal"] <= -0.5
    slow = await mix(running, moods=["energetic"], max_tempo=130, size=30, max_per_artist=None)
    assert slow and all(lib.payloads[t["track_id"]]["tempo"] == 120.0 for t in slow)
    assert len(slow) == len(lib.ids("A")) // 2
    prompt = await mix(running, prompt="late night rain", moods=["peaceful"], size=5)
    assert len(prompt) == 5 and {lib.cluster[t["track_id"]] for t in prompt} == {"C"}


async def test_mix_for_a_user_leans_to_their_taste(running: Any, lib: Library):
    await store_library(running.app, lib)
    now = int(time.time())
    liked = [{"track_id": t, "play_count": 5, "last_played": now - 3600} for t in lib.ids("A")]
    status, body = await running.api.call(
        "POST", "/users/u1/profile/compute", {"interactions": liked[:10]}
    )
    assert status == 200, body
    mine = await mix(running, user_id="u1", size=10)
    assert sum(lib.cluster[t["track_id"]] == "A" for t in mine) >= 9
    # a user's taste does not override a hard trait
    calm = await mix(running, user_id="u1", moods=["peaceful"], size=6)
    assert {lib.cluster[t["track_id"]] for t in calm} == {"C"}
    status, err = await running.api.call("POST", "/mixes", {"user_id": "nobody"})
    assert status == 404 and "nobody" in err["error"]["message"]


async def test_mix_errors(running: Any, lib: Library):
    await store_library(running.app, lib)
    for body, words in (
        ({}, "at least one trait"),
        ({"moods": ["grumpy"]}, "unknown moods"),
        ({"moods": ["happy"], "min_valence": 0.5, "max_valence": 0.1}, "min_valence"),
        ({"moods": ["happy"], "min_valence": 2}, "min_valence"),
        ({"moods": ["happy"], "size": 0}, "size"),
    ):
        status, err = await running.api.call("POST", "/mixes", body)
        assert status == 400 and words in err["error"]["message"], (body, err)


async def test_saved_mix_and_path_become_playlists(running: Any, lib: Library):
    await store_library(running.app, lib)
    status, r = await running.api.call(
        "POST", "/mixes", {"moods": ["melancholic"], "size": 5, "save": True, "name": "Blue"}
    )
    assert status == 200 and r["playlist_id"]
    status, got = await running.api.call("GET", f"/playlists/{r['playlist_id']}")
    assert status == 200, got
    assert got["playlist"]["name"] == "Blue" and got["playlist"]["kind"] == "mix"
    assert got["track_ids"] == [t["track_id"] for t in r["tracks"]]
    body = {"start_id": "A0-0", "end_id": "B0-0", "steps": 5, "save": True}
    status, p = await running.api.call("POST", "/tracks/path", body)
    assert status == 200 and p["playlist_id"]
    status, got = await running.api.call("GET", f"/playlists/{p['playlist_id']}")
    assert got["track_ids"] == [s["track_id"] for s in p["steps"]]
    assert got["playlist"]["name"] == "Song A0-0 → Song B0-0"


def test_unit_helper_is_unit() -> None:
    v = unit(np.arange(1, 5, dtype=np.float32))
    assert float(np.linalg.norm(v)) == pytest.approx(1.0)


def test_path_assignment_is_the_best_monotone_one() -> None:
    """The DP against brute force on small random instances."""
    from itertools import combinations, permutations

    from insight.playlists.path import assign

    rng = np.random.default_rng(0)
    for _ in range(40):
        c, m = int(rng.integers(3, 7)), int(rng.integers(1, 4))
        prog = rng.permutation(c).astype(float) / c
        sims = rng.random((c, m))
        picks = assign(prog, sims)
        assert len(picks) == min(m, c)
        assert all(prog[x] < prog[y] for x, y in itertools.pairwise(picks))
        best = max(
            sum(sims[j, i] for i, j in enumerate(seq))
            for combo in combinations(range(c), min(m, c))
            for seq in permutations(combo)
            if all(prog[x] < prog[y] for x, y in itertools.pairwise(seq))
        )
        assert sum(sims[j, i] for i, j in enumerate(picks)) == pytest.approx(best)
