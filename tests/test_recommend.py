"""Recommendations on a synthetic library with known clusters (over HTTP and the bus)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from synthetic_library import Library, build, store_library

from insight.codec import Format
from insight.history import ListeningHistory

NOW = int(time.time())
DAY = 86_400
FORMATS = [Format.JSON, Format.MSGPACK]


@pytest.fixture(scope="module")
def lib() -> Library:
    return build()


async def setup(running: Any, lib: Library) -> None:
    await store_library(running.app.require_store(), lib)


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
