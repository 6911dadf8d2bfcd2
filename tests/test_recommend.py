"""Recommendations on a synthetic library with known clusters (over HTTP and the bus)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from synthetic_library import Library, build, history_service, store_library

from insight.codec import Format

NOW = int(time.time())
DAY = 86_400
FORMATS = [Format.JSON, Format.MSGPACK]


@pytest.fixture(scope="module")
def lib() -> Library:
    return build()


async def setup(running: Any, lib: Library) -> None:
    await store_library(running.app, lib)


def plays(ids: list[str], n: int = 3, ts: int = NOW - DAY, fav: bool = False) -> list[dict]:
    return [
        {"track_id": t, "play_count": n, "skip_count": 0, "is_favorite": fav, "last_played": ts}
        for t in ids
    ]


def skips(ids: list[str], n: int = 3, ts: int = NOW - DAY) -> list[dict]:
    return [{"track_id": t, "play_count": 0, "skip_count": n, "last_played": ts} for t in ids]


async def compute(running: Any, user: str, interactions: list[dict], **extra: Any) -> Any:
    status, body = await running.api.call(
        "POST", f"/users/{user}/profile/compute", {"interactions": interactions, **extra}
    )
    assert status == 200, body
    return body


async def recommend(running: Any, user: str, fmt: Format = Format.MSGPACK, **body: Any) -> Any:
    status, reply = await running.api.call("POST", f"/users/{user}/recommend", body, fmt=fmt)
    assert status == 200, reply
    return reply


@pytest.mark.parametrize("fmt", FORMATS)
async def test_plays_a_skips_b(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    a, b = lib.ids("A"), lib.ids("B")
    heard = a[::3]
    await compute(running, "u1", plays(heard) + skips(b[::3]))
    reply = await recommend(running, "u1", fmt, limit=10)
    got = [t["track_id"] for t in reply["tracks"]]
    assert len(got) == 10
    assert all(lib.cluster[t] == "A" for t in got)
    assert not set(got) & set(heard)
    assert 0 < reply["profile_confidence"] < 1
    first = reply["tracks"][0]
    assert first["reason"].startswith("close to ")
    assert first["metadata"]["track_id"] == first["track_id"]
    assert first["metadata"]["primary_mood"] == "energetic"
    scores = [t["score"] for t in reply["tracks"]]
    assert all(-1 <= s <= 1 for s in scores)
    # a large limit never falls back to the skipped cluster
    reply = await recommend(running, "u1", fmt, limit=80)
    assert not any(lib.cluster[t["track_id"]] == "B" for t in reply["tracks"])


def clusters(reply: Any, lib: Library) -> list[str]:
    return [lib.cluster[t["track_id"]] for t in reply["tracks"]]


async def test_favorites_weigh_more(running: Any, lib: Library) -> None:
    await setup(running, lib)
    a, c = lib.ids("A"), lib.ids("C")
    # same plays on both sides; only the C tracks are favorites
    await compute(running, "fav", plays(a[:4], n=1) + plays(c[:4], n=1, fav=True))
    assert clusters(await recommend(running, "fav", limit=3, diversity=0.0), lib)[0] == "C"
    await compute(running, "fav", plays(a[:4], n=1, fav=True) + plays(c[:4], n=1))
    assert clusters(await recommend(running, "fav", limit=3, diversity=0.0), lib)[0] == "A"


async def test_older_plays_weigh_less(running: Any, lib: Library) -> None:
    await setup(running, lib)
    a, c = lib.ids("A"), lib.ids("C")
    old, new = NOW - 20 * DAY, NOW - DAY
    await compute(running, "age", plays(a[:4], ts=old) + plays(c[:4], ts=new))
    assert clusters(await recommend(running, "age", limit=3, diversity=0.0), lib)[0] == "C"
    await compute(running, "age", plays(a[:4], ts=new) + plays(c[:4], ts=old))
    assert clusters(await recommend(running, "age", limit=3, diversity=0.0), lib)[0] == "A"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_filters_hold(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    a = lib.ids("A")
    await compute(running, "f", plays(a[:6]))
    # the filter wins over taste: only peaceful tracks, the user's cluster has none
    reply = await recommend(running, "f", fmt, limit=5, filter={"moods": ["peaceful"]})
    assert reply["tracks"] and set(clusters(reply, lib)) == {"C"}
    reply = await recommend(running, "f", fmt, limit=5, filter={"min_valence": 0.6})
    assert reply["tracks"] and set(clusters(reply, lib)) == {"A"}
    reply = await recommend(
        running, "f", fmt, limit=30, filter={"artists": ["artist a2"]}, max_per_artist=None
    )
    assert {lib.artist[t["track_id"]] for t in reply["tracks"]} == {"Artist A2"}
    # exclude_ids at the top level apply without a filter object (the original ignored them)
    first = await recommend(running, "f", fmt, limit=3)
    ids = [t["track_id"] for t in first["tracks"]]
    again = await recommend(running, "f", fmt, limit=3, exclude_ids=ids)
    assert not {t["track_id"] for t in again["tracks"]} & set(ids)


async def test_mmr_raises_artist_diversity(running: Any, lib: Library) -> None:
    await setup(running, lib)
    a = lib.ids("A")
    await compute(running, "mmr", plays(a[1::5]))  # one track of each artist, all of A
    pure = await recommend(
        running, "mmr", limit=8, diversity=0.0, max_per_artist=None, exclude_recent=False
    )
    diverse = await recommend(
        running, "mmr", limit=8, diversity=0.6, max_per_artist=None, exclude_recent=False
    )
    artists = [{lib.artist[t["track_id"]] for t in r["tracks"]} for r in (pure, diverse)]
    assert len(artists[1]) > len(artists[0])
    assert set(clusters(diverse, lib)) == {"A"}
    # pure relevance is sorted by score; the cap holds
    scores = [t["score"] for t in pure["tracks"]]
    assert scores == sorted(scores, reverse=True)
    capped = await recommend(running, "mmr", limit=6, diversity=0.0, max_per_artist=1)
    names = [lib.artist[t["track_id"]] for t in capped["tracks"]]
    assert len(names) == len(set(names)) == 6


async def test_recent_history_excluded(running: Any, lib: Library, tmp_path: Any) -> None:
    await setup(running, lib)
    async with history_service(running.app, tmp_path / "history.db") as history:
        a = lib.ids("A")
        await compute(running, "h", plays(a[:3]))
        top = [t["track_id"] for t in (await recommend(running, "h", limit=5))["tracks"]]
        await history.record_play("h", top[0], 200, 200, True, timestamp=NOW - 3600)
        again = [t["track_id"] for t in (await recommend(running, "h", limit=5))["tracks"]]
        assert top[0] not in again
        kept = await recommend(running, "h", limit=12, exclude_recent=False, max_per_artist=None)
        assert top[0] in [t["track_id"] for t in kept["tracks"]]


async def test_mood_profile_and_errors(running: Any, lib: Library) -> None:
    await setup(running, lib)
    a, c = lib.ids("A"), lib.ids("C")
    body = await compute(running, "m", plays(a[:4]) + plays(c[:4]))
    kinds = {p["profile_type"] for p in body["profiles"]}
    assert kinds == {"global", "mood:energetic", "mood:peaceful"}
    reply = await recommend(running, "m", limit=5, profile_type="mood:peaceful")
    assert set(clusters(reply, lib)) == {"C"}
    status, err = await running.api.call("POST", "/users/nobody/recommend", {})
    assert status == 404 and "compute" in err["error"]["message"]
    status, err = await running.api.call("POST", "/users/m/recommend", {"profile_type": "mood"})
    assert status == 400 and "mood:<mood id>" in err["error"]["message"]
    status, err = await running.api.call("POST", "/users/m/recommend", {"limit": 0})
    assert status == 400
    status, err = await running.api.call(
        "POST", "/users/m/recommend", {"profile_type": "mood:sad"}, fmt=Format.JSON
    )
    assert status == 404


async def test_recommend_on_the_bus(running: Any, lib: Library) -> None:
    await setup(running, lib)
    await compute(running, "bus", plays(lib.ids("A")[:4]))
    reply = await running.bus.call("insight.v1.users.recommend", {"user_id": "bus", "limit": 4})
    got = reply["tracks"] if isinstance(reply, dict) else reply
    assert len(got) == 4
