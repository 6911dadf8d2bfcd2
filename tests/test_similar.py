"""Similar tracks, multi-seed with negatives, and radio on the synthetic library."""

from __future__ import annotations

from typing import Any

import pytest
from synthetic_library import Library, build, store_library

from insight.codec import Format

FORMATS = [Format.JSON, Format.MSGPACK]


@pytest.fixture(scope="module")
def lib() -> Library:
    return build()


async def setup(running: Any, lib: Library) -> None:
    await store_library(running.app, lib)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_similar_by_id(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    seed = "A1-0"  # index 5: text only (audio_every=2 stores even indexes)
    status, r = await running.api.call("GET", f"/tracks/{seed}/similar?limit=5", fmt=fmt)
    assert status == 200, r
    ids = [x["track_id"] for x in r["results"]]
    assert r["count"] == 5 and seed not in ids
    assert {lib.cluster[t] for t in ids} == {"A"}
    assert ids[:4] == sorted(ids[:4], key=lambda t: -float(lib.vectors[t] @ lib.vectors[seed]))
    assert r["results"][0]["reason"] == 'described like "Song A1-0"'
    assert r["results"][0]["metadata"]["artists"] == [lib.artist[ids[0]]]
    # a track with audio: searched in the audio space
    status, r = await running.api.call("GET", "/tracks/A0-0/similar?limit=3", fmt=fmt)
    assert status == 200 and r["results"][0]["reason"].startswith("sounds like")
    assert all(lib.cluster[x["track_id"]] == "A" for x in r["results"])
    status, r = await running.api.call(
        "GET", "/tracks/A0-0/similar?limit=3&collection=text", fmt=fmt
    )
    assert status == 200 and r["results"][0]["reason"].startswith("described like")
    # filter in the POST twin
    status, r = await running.api.call(
        "POST", "/tracks/A0-0/similar", {"limit": 4, "filter": {"artists": ["Artist A3"]}}, fmt=fmt
    )
    assert status == 200 and {lib.artist[x["track_id"]] for x in r["results"]} == {"Artist A3"}
    # errors
    status, err = await running.api.call("GET", "/tracks/nope/similar", fmt=fmt)
    assert status == 404 and "nope" in err["error"]["message"]
    status, err = await running.api.call("GET", f"/tracks/{seed}/similar?collection=audio", fmt=fmt)
    assert status == 404 and "audio" in err["error"]["message"]
    status, err = await running.api.call("GET", f"/tracks/{seed}/similar?limit=0", fmt=fmt)
    assert status == 400


@pytest.mark.parametrize("fmt", FORMATS)
async def test_multi_seed(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    seeds = ["A0-0", "C0-0"]
    status, r = await running.api.call(
        "POST", "/tracks/similar", {"track_ids": seeds, "limit": 12}, fmt=fmt
    )
    assert status == 200, r
    ids = [x["track_id"] for x in r["results"]]
    assert not set(ids) & set(seeds)
    assert {lib.cluster[t] for t in ids} == {"A", "C"}  # both sides of a two-sided seed set
    assert all(x["reason"].startswith("like ") for x in r["results"])
    # a negative seed removes its side
    status, r = await running.api.call(
        "POST",
        "/tracks/similar",
        {"track_ids": seeds, "negative_ids": ["C1-0", "C2-0"], "limit": 12},
        fmt=fmt,
    )
    assert status == 200
    assert {lib.cluster[x["track_id"]] for x in r["results"]} == {"A"}
    status, err = await running.api.call(
        "POST", "/tracks/similar", {"track_ids": ["x", "y"]}, fmt=fmt
    )
    assert status == 404 and "embedding" in err["error"]["message"]
    status, _ = await running.api.call("POST", "/tracks/similar", {"track_ids": []}, fmt=fmt)
    assert status == 400


@pytest.mark.parametrize("fmt", FORMATS)
async def test_radio(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    recent = ["A1-0", "A1-1", "A2-0", "A3-0"]
    body = {"seed_ids": ["A0-0"], "recent_ids": recent, "count": 6, "max_per_artist": 2}
    status, r = await running.api.call("POST", "/radio/next", body, fmt=fmt)
    assert status == 200, r
    ids = [x["track_id"] for x in r["results"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert not set(ids) & ({"A0-0"} | set(recent))  # no repeated track
    artists = [lib.artist[t] for t in ids]
    assert not {"Artist A1", "Artist A2", "Artist A3"} & set(artists)  # rested artists
    assert max(artists.count(a) for a in artists) <= 2
    assert {lib.cluster[t] for t in ids} == {"A"}
    assert r["results"][0]["reason"].startswith("after ")
    # a small filter: artists are repeated rather than returning nothing
    body = {
        "seed_ids": ["A0-0"],
        "recent_ids": recent,
        "count": 3,
        "filter": {"artists": ["Artist A1"]},
        "max_per_artist": 5,
    }
    status, r = await running.api.call("POST", "/radio/next", body, fmt=fmt)
    assert status == 200 and {lib.artist[x["track_id"]] for x in r["results"]} == {"Artist A1"}
    assert not {x["track_id"] for x in r["results"]} & set(recent)
    status, err = await running.api.call("POST", "/radio/next", {"seed_ids": ["zz"]}, fmt=fmt)
    assert status == 404 and "zz" in err["error"]["message"]
    status, _ = await running.api.call("POST", "/radio/next", {"seed_ids": []}, fmt=fmt)
    assert status == 400


async def test_similar_on_the_bus(running: Any, lib: Library) -> None:
    await setup(running, lib)
    r = await running.bus.call("insight.v1.radio.next", {"seed_ids": ["C0-0"], "count": 3})
    assert [lib.cluster[x["track_id"]] for x in r["results"]] == ["C", "C", "C"]
