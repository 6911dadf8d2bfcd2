"""HTTP bridge, tracks/*: get, delete, upsert, batch-upsert, embed-text, batch-embed-text
(search and search-text: test_http_search.py). Both body formats, values asserted, every
documented error."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight.codec import Format

J = Format.JSON
M = Format.MSGPACK
FORMATS = [M, J]
_ids = itertools.count()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    r = await start_running(make_settings(tmp_path_factory.mktemp("tracks") / "d", tiny_model_dir))
    yield r
    await stop_running(r)


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{next(_ids)}"


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def cos(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def path_of(track_id: str) -> str:
    return "/tracks/" + quote(track_id, safe="")


async def upsert(r: Running, track_id: str, seed: int, **meta: Any) -> None:
    body = {
        "track_id": track_id,
        "metadata": {"name": track_id, **meta},
        "text_embedding": vec(seed),
    }
    status, reply = await r.api.call("POST", "/tracks/upsert", body)
    assert status == 200, reply


# --- upsert + get -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_upsert_then_get(stack: Running, fmt: Format) -> None:
    tid = uid("up")
    body = {
        "track_id": tid,
        "metadata": {"name": "Song", "artists": ["A", "B"], "album": "LP", "genres": ["rock"]},
        "text_embedding": vec(1),
        "audio_embedding": vec(2),
    }
    status, reply = await stack.api.call("POST", "/tracks/upsert", body, fmt=fmt)
    assert status == 200
    assert reply == {"track_id": tid, "text_stored": True, "audio_stored": True}
    status, got = await stack.api.call(
        "GET", path_of(tid) + "?include_text=true&include_audio=true", fmt=fmt
    )
    assert status == 200
    assert got["track_id"] == tid and got["has_text"] and got["has_audio"]
    meta = got["metadata"]
    assert (meta["name"], meta["artists"], meta["album"], meta["genres"]) == (
        "Song",
        ["A", "B"],
        "LP",
        ["rock"],
    )
    assert cos(got["text_embedding"], vec(1)) > 0.9999
    assert cos(got["audio_embedding"], vec(2)) > 0.9999
    # without include_* no vectors come back
    _, plain = await stack.api.call("GET", path_of(tid), fmt=fmt)
    assert plain["text_embedding"] is None and plain["audio_embedding"] is None


@pytest.mark.parametrize(
    "tid", ["a/b/c", "ünïcødé/曲/🎵", "spaces and ?query=1&x#frag", "%2F-literal", "x" * 300]
)
async def test_ids_with_slashes_and_unicode(stack: Running, tid: str) -> None:
    await upsert(stack, tid, 7)
    status, got = await stack.api.call("GET", path_of(tid) + "?include_text=1", fmt=J)
    assert status == 200, got
    assert got["track_id"] == tid and got["metadata"]["name"] == tid
    assert cos(got["text_embedding"], vec(7)) > 0.9999
    status, deleted = await stack.api.call("DELETE", path_of(tid))
    assert status == 200
    assert deleted == {"track_id": tid, "text_deleted": True, "audio_deleted": False}
    status, _ = await stack.api.call("GET", path_of(tid))
    assert status == 404


async def test_dot_ids_percent_encoded(stack: Running) -> None:
    """``.`` and ``..`` are ids too when percent-encoded (clients must not normalise them)."""
    import yarl

    for tid, enc in [("..", "%2E%2E"), (".", "%2e")]:
        await upsert(stack, tid, 11)
        url = yarl.URL(f"{stack.api.base}/tracks/{enc}", encoded=True)
        async with stack.api.session.get(url, headers={"Accept": "application/json"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["track_id"] == tid


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"text_embedding": None}, "At least one embedding"),
        ({"text_embedding": [0.1] * 511}, "dimension mismatch: expected 512, got 511"),
        ({"text_embedding": "nope"}, "text_embedding"),
        ({"track_id": ""}, "track_id"),
        ({"metadata": None}, "metadata"),
        ({"metadata": {"name": 5}}, "metadata.name"),
    ],
)
async def test_upsert_bad_input(
    stack: Running, fmt: Format, patch: dict[str, Any], needle: str
) -> None:
    body = {"track_id": uid("bad"), "metadata": {"name": "x"}, "text_embedding": vec(0), **patch}
    status, reply = await stack.api.call("POST", "/tracks/upsert", body, fmt=fmt)
    assert status == 400, reply
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert needle in reply["error"]["message"], reply


async def test_upsert_nan_rejected_msgpack(stack: Running) -> None:
    body = {
        "track_id": uid("nan"),
        "metadata": {"name": "x"},
        "text_embedding": [float("nan")] * 512,
    }
    status, reply = await stack.api.call("POST", "/tracks/upsert", body)
    assert status == 400 and "NaN" in reply["error"]["message"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("field", ["text_embedding", "audio_embedding"])
async def test_upsert_zero_vector_refused_and_nothing_stored(
    stack: Running, fmt: Format, field: str
) -> None:
    """A zero vector has no direction: refused before anything is written, so the track keeps
    both of its previous vectors (not just the one that came before the bad one)."""
    tid = uid("zero")
    first = {"track_id": tid, "metadata": {"name": "before"}}
    first |= {"text_embedding": vec(21), "audio_embedding": vec(22)}
    assert (await stack.api.call("POST", "/tracks/upsert", first, fmt=fmt))[0] == 200
    bad = {**first, "metadata": {"name": "after"}, "text_embedding": vec(23)}
    bad["audio_embedding"] = vec(24)
    bad[field] = [0.0] * 512
    status, reply = await stack.api.call("POST", "/tracks/upsert", bad, fmt=fmt)
    assert status == 400, reply
    assert reply["error"]["code"] == "BAD_REQUEST"
    what = "Text" if field == "text_embedding" else "Audio"
    assert reply["error"]["message"] == (
        f"{what} embedding is all zeros (cosine similarity is undefined)"
    )
    q = "?include_text=true&include_audio=true"
    status, got = await stack.api.call("GET", path_of(tid) + q, fmt=fmt)
    assert status == 200
    assert got["metadata"]["name"] == "before"
    assert cos(got["text_embedding"], vec(21)) > 0.9999
    assert cos(got["audio_embedding"], vec(22)) > 0.9999


@pytest.mark.parametrize("fmt", FORMATS)
async def test_get_unknown_is_404(stack: Running, fmt: Format) -> None:
    status, reply = await stack.api.call("GET", path_of("no/such track"), fmt=fmt)
    assert status == 404
    assert reply == {"error": {"code": "NOT_FOUND", "message": "Track 'no/such track' not found"}}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_delete(stack: Running, fmt: Format) -> None:
    tid = uid("del")
    await stack.api.call(
        "POST",
        "/tracks/upsert",
        {
            "track_id": tid,
            "metadata": {"name": "x"},
            "text_embedding": vec(3),
            "audio_embedding": vec(4),
        },
    )
    # an optional body chooses the collections
    status, reply = await stack.api.call("DELETE", path_of(tid), {"text": False}, fmt=fmt)
    assert status == 200
    assert reply == {"track_id": tid, "text_deleted": False, "audio_deleted": True}
    _, got = await stack.api.call("GET", path_of(tid), fmt=fmt)
    assert got["has_text"] is True and got["has_audio"] is False
    status, reply = await stack.api.call("DELETE", path_of(tid), fmt=fmt)
    assert reply == {"track_id": tid, "text_deleted": True, "audio_deleted": False}
    # deleting again is not an error, and says nothing was deleted
    status, reply = await stack.api.call("DELETE", path_of(tid), fmt=fmt)
    assert status == 200
    assert reply == {"track_id": tid, "text_deleted": False, "audio_deleted": False}


# --- batch upsert ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_batch_upsert_order_and_partial_failure(stack: Running, fmt: Format) -> None:
    ids = [uid("bu") for _ in range(5)]
    tracks = [
        {"track_id": t, "metadata": {"name": t}, "text_embedding": vec(i)}
        for i, t in enumerate(ids)
    ]
    tracks[2]["text_embedding"] = [0.5] * 3  # wrong dimension: that item fails alone
    status, reply = await stack.api.call(
        "POST", "/tracks/batch-upsert", {"tracks": tracks}, fmt=fmt
    )
    assert status == 200
    assert [r["track_id"] for r in reply["results"]] == ids
    assert [r["success"] for r in reply["results"]] == [True, True, False, True, True]
    assert "dimension mismatch" in reply["results"][2]["error"]
    assert (reply["total"], reply["succeeded"], reply["failed"]) == (5, 4, 1)
    for i in (0, 4):
        _, got = await stack.api.call("GET", path_of(ids[i]) + "?include_text=true")
        assert cos(got["text_embedding"], vec(i)) > 0.9999
    assert (await stack.api.call("GET", path_of(ids[2])))[0] == 404


async def test_batch_upsert_limits(stack: Running) -> None:
    one = {"track_id": "x", "metadata": {"name": "x"}, "text_embedding": vec(0)}
    status, reply = await stack.api.call("POST", "/tracks/batch-upsert", {"tracks": [one] * 101})
    assert status == 400 and "tracks" in reply["error"]["message"]
    status, reply = await stack.api.call("POST", "/tracks/batch-upsert", {"tracks": "x"})
    assert status == 400
    status, reply = await stack.api.call("POST", "/tracks/batch-upsert", {"tracks": []})
    assert status == 200 and reply == {"results": [], "total": 0, "succeeded": 0, "failed": 0}


# --- embed-text (store) ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_embed_text_and_store(stack: Running, fmt: Format) -> None:
    tid = uid("et")
    meta = {
        "name": "Clair de Lune",
        "artists": ["Debussy"],
        "genres": ["classical"],
        "metadata_hash": "h1",
    }
    body = {"track_id": tid, "metadata": meta}
    status, reply = await stack.api.call("POST", "/tracks/embed-text", body, fmt=fmt)
    assert status == 200
    assert reply["track_id"] == tid and reply["stored"] is True
    assert "Clair de Lune" in reply["text"] and "Debussy" in reply["text"]
    _, got = await stack.api.call("GET", path_of(tid) + "?include_text=true", fmt=fmt)
    assert got["metadata"]["metadata_hash"] == "h1"
    _, direct = await stack.api.call("POST", "/embed/text", {"text": reply["text"]})
    assert cos(got["text_embedding"], direct["embedding"]) > 0.9999
    # unchanged hash: skipped
    status, again = await stack.api.call("POST", "/tracks/embed-text", body, fmt=fmt)
    assert status == 200 and again["stored"] is False
    # changed hash: stored again
    body2 = {"track_id": tid, "metadata": {**meta, "name": "Rêverie", "metadata_hash": "h2"}}
    status, third = await stack.api.call("POST", "/tracks/embed-text", body2, fmt=fmt)
    assert third["stored"] is True and "Rêverie" in third["text"]
    _, got2 = await stack.api.call("GET", path_of(tid), fmt=fmt)
    assert got2["metadata"]["name"] == "Rêverie"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_embed_text_and_store_bad_input(stack: Running, fmt: Format) -> None:
    for body, needle in [
        ({"metadata": {"name": "x"}}, "track_id"),
        ({"track_id": "x"}, "metadata"),
        ({"track_id": "x", "metadata": {}}, "metadata.name"),
    ]:
        status, reply = await stack.api.call("POST", "/tracks/embed-text", body, fmt=fmt)
        assert status == 400 and needle in reply["error"]["message"], reply


@pytest.mark.parametrize("fmt", FORMATS)
async def test_batch_embed_text_order(stack: Running, fmt: Format) -> None:
    ids = [uid("bet") for _ in range(7)]
    tracks = [
        {"track_id": t, "metadata": {"name": f"Song {i}", "artists": [f"Artist {i}"]}}
        for i, t in enumerate(ids)
    ]
    status, reply = await stack.api.call(
        "POST", "/tracks/batch-embed-text", {"tracks": tracks}, fmt=fmt
    )
    assert status == 200
    assert [r["track_id"] for r in reply["results"]] == ids
    assert all(r["success"] and r["text_stored"] for r in reply["results"])
    assert [f"Song {i}" in r["text"] for i, r in enumerate(reply["results"])] == [True] * 7
    assert (reply["total"], reply["succeeded"], reply["failed"]) == (7, 7, 0)
    # each stored vector is its own text's embedding
    r3 = reply["results"][3]
    _, got = await stack.api.call("GET", path_of(ids[3]) + "?include_text=true")
    _, direct = await stack.api.call("POST", "/embed/text", {"text": r3["text"]})
    assert cos(got["text_embedding"], direct["embedding"]) > 0.9999
    status, reply = await stack.api.call(
        "POST", "/tracks/batch-embed-text", {"tracks": tracks[:1] * 101}, fmt=fmt
    )
    assert status == 400


# --- errors shared by all tracks endpoints ------------------------------------------------------


POSTS = [
    "/tracks/upsert",
    "/tracks/batch-upsert",
    "/tracks/embed-text",
    "/tracks/batch-embed-text",
    "/tracks/search",
    "/tracks/search-text",
]


@pytest.mark.parametrize("path", POSTS)
async def test_wrong_content_type_and_garbage(stack: Running, path: str) -> None:
    status, reply = await stack.api.call(
        "POST",
        path,
        raw=b"track_id=x",
        fmt=J,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415 and reply["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    status, reply = await stack.api.call(
        "POST", path, raw=b"\x92\x01", headers={"Content-Type": "application/msgpack"}, fmt=J
    )
    assert status == 400 and reply["error"]["code"] == "DESERIALIZATION_ERROR"


async def test_503_without_model(running_no_model: Running) -> None:
    r = running_no_model
    tid = "nm-1"
    # storage works without a model: upsert and search by vector succeed
    body = {"track_id": tid, "metadata": {"name": "x"}, "text_embedding": vec(5)}
    status, reply = await r.api.call("POST", "/tracks/upsert", body)
    assert status == 200 and reply["text_stored"] is True
    status, reply = await r.api.call("POST", "/tracks/search", {"embedding": vec(5)})
    assert status == 200 and reply["results"][0]["track_id"] == tid
    for path, body in [
        ("/tracks/embed-text", {"track_id": tid, "metadata": {"name": "x"}}),
        ("/tracks/batch-embed-text", {"tracks": [{"track_id": tid, "metadata": {"name": "x"}}]}),
        ("/tracks/search-text", {"query": "calm"}),
    ]:
        for fmt in FORMATS:
            status, reply = await r.api.call("POST", path, body, fmt=fmt)
            assert status == 503, (path, reply)
            assert reply["error"]["code"] == "MODEL_NOT_LOADED"
            assert "INSIGHT_MODEL__PATH" in reply["error"]["message"]


async def test_vectors_same_in_msgpack_and_json(stack: Running) -> None:
    """msgpack carries float32; JSON carries the same numbers."""
    tid = uid("rt")
    v = vec(99)
    await stack.api.call(
        "POST", "/tracks/upsert", {"track_id": tid, "metadata": {"name": "x"}, "audio_embedding": v}
    )
    _, m = await stack.api.call("GET", path_of(tid) + "?include_audio=true")
    _, j = await stack.api.call("GET", path_of(tid) + "?include_audio=true", fmt=J)
    assert np.allclose(m["audio_embedding"], j["audio_embedding"], atol=1e-6)
    assert np.allclose(m["audio_embedding"], np.float32(v), atol=1e-6)
