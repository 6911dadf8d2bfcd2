"""HTTP bridge, tracks/search and tracks/search-text: both body formats, values asserted,
every documented error. The store and helpers are test_http_tracks.py's."""

from __future__ import annotations

from typing import Any

import pytest
import test_http_tracks
from conftest import Running
from test_http_tracks import FORMATS, uid, upsert, vec

from insight.codec import Format

stack = test_http_tracks.stack  # the same module-scoped stack fixture


# --- search -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_search_by_vector(stack: Running, fmt: Format) -> None:
    ids = [uid("s") for _ in range(4)]
    seed = 1000 + 10 * FORMATS.index(fmt)
    for i, t in enumerate(ids):
        await upsert(stack, t, seed + i, artists=[f"{ids[0]} Artist {i % 2}"])
    status, reply = await stack.api.call(
        "POST", "/tracks/search", {"embedding": vec(seed + 2), "limit": 3}, fmt=fmt
    )
    assert status == 200
    assert reply["count"] == len(reply["results"]) == 3
    top = reply["results"][0]
    assert top["track_id"] == ids[2]
    assert top["score"] == pytest.approx(1.0, abs=1e-3)
    assert top["metadata"]["name"] == ids[2]
    scores = [r["score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)
    # filter by artist and exclusion
    status, reply = await stack.api.call(
        "POST",
        "/tracks/search",
        {
            "embedding": vec(seed + 2),
            "limit": 10,
            "filter": {"artists": [f"{ids[0]} Artist 0"], "exclude_ids": [ids[2]]},
        },
        fmt=fmt,
    )
    assert status == 200
    assert [r["track_id"] for r in reply["results"]] == [ids[0]]
    # the bus gives the same answer
    query = {"embedding": vec(seed + 2), "limit": 3}
    bus = await stack.bus.call("insight.v1.tracks.search", query)
    _, http = await stack.api.call("POST", "/tracks/search", query)
    assert [r["track_id"] for r in bus["results"]] == [r["track_id"] for r in http["results"]]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"embedding": [0.1] * 10}, "dimension mismatch"),
        ({"embedding": vec(0), "limit": 0}, "limit"),
        ({"embedding": vec(0), "limit": 101}, "limit"),
        ({"embedding": vec(0), "collection": "lyrics"}, "collection"),
        ({"embedding": vec(0), "filter": {"artists": "x"}}, "filter.artists"),
        ({}, "embedding"),
    ],
)
async def test_search_bad_input(stack: Running, fmt: Format, body: Any, needle: str) -> None:
    status, reply = await stack.api.call("POST", "/tracks/search", body, fmt=fmt)
    assert status == 400, reply
    assert needle in reply["error"]["message"], reply


@pytest.mark.parametrize("fmt", FORMATS)
async def test_search_text(stack: Running, fmt: Format) -> None:
    tid = uid("st")
    body = {
        "track_id": tid,
        "metadata": {"name": f"Thunderstruck {tid}", "artists": ["AC/DC"], "genres": ["hard rock"]},
    }
    _, stored = await stack.api.call("POST", "/tracks/embed-text", body)
    status, reply = await stack.api.call(
        "POST", "/tracks/search-text", {"query": stored["text"], "limit": 5}, fmt=fmt
    )
    assert status == 200
    assert reply["results"][0]["track_id"] == tid
    assert reply["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert reply["count"] == len(reply["results"]) <= 5
    for bad, needle in [
        ({"query": ""}, "query"),
        ({"query": "x", "limit": 0}, "limit"),
        ({}, "query"),
    ]:
        status, err = await stack.api.call("POST", "/tracks/search-text", bad, fmt=fmt)
        assert status == 400 and needle in err["error"]["message"]
