"""HTTP bridge, system endpoints: health, config, status, storage stats, OpenAPI, docs, metrics."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight import __version__
from insight.codec import Format

J = Format.JSON
QDRANT_KEY = "qdrant-S3CRET-key-0123456789"
SERVER_KEY = "bridge-key-abcdef"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    """One stack for the module, with a Qdrant API key configured (it must never leak)."""
    data = tmp_path_factory.mktemp("http-system") / "data"
    settings = make_settings(data, tiny_model_dir, storage={"api_key": QDRANT_KEY})
    r = await start_running(settings)
    yield r
    await stop_running(r)


async def get_raw(r: Running, path: str, **headers: str) -> tuple[int, str, bytes]:
    async with r.api.session.get(r.api.base + path, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def vec(seed: int) -> list[float]:
    import numpy as np

    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


# --- content negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/config", "/status", "/storage/stats"])
async def test_msgpack_by_default_and_json_on_request(stack: Running, path: str) -> None:
    status, ctype, body = await get_raw(stack, path)  # no Accept at all
    assert status == 200
    assert ctype == "application/msgpack"
    as_msgpack = msgpack.unpackb(body, raw=False)
    status, ctype, body = await get_raw(stack, path, Accept="application/json")
    assert status == 200
    assert ctype == "application/json"
    as_json = json.loads(body)
    assert set(as_msgpack) == set(as_json)
    # the same reply in both formats (uptime and index size may tick between the two calls)
    if path == "/health":
        assert as_msgpack == as_json


# --- values ----------------------------------------------------------------------------------


async def test_health_values(stack: Running) -> None:
    for fmt in (Format.MSGPACK, J):
        status, body = await stack.api.call("GET", "/health", fmt=fmt)
        assert status == 200
        assert body == {
            "status": "healthy",
            "version": __version__,
            "model_loaded": True,
            "storage_ready": True,
            "message": None,
        }


async def test_health_equals_bus_reply(stack: Running) -> None:
    _, http = await stack.api.call("GET", "/health", fmt=J)
    bus = await stack.bus.call("insight.v1.health", {})
    assert http == bus


async def test_config_values(stack: Running) -> None:
    status, body = await stack.api.call("GET", "/config", fmt=J)
    assert status == 200
    assert body["model"] == {
        "name": "insight/tiny-clap",
        "cuda_enabled": False,
        "loaded": True,
        "device": "CPU",
    }
    assert body["audio"] == {"window_size_s": 10.0, "hop_size_s": 10.0}
    assert body["server"]["host"] == "127.0.0.1"
    assert body["storage"]["mode"] == "file"
    assert body["storage"]["enabled"] is True
    assert body["storage"]["connected"] is True


async def test_config_never_leaks_storage_api_key(stack: Running) -> None:
    key = QDRANT_KEY
    forms = [
        key,
        key.lower(),
        key.upper(),
        base64.b64encode(key.encode()).decode(),
        key.encode().hex(),
        "api_key",
        "**********",
    ]
    for fmt in (Format.MSGPACK, J):
        async with stack.api.session.get(
            stack.api.base + "/config", headers={"Accept": fmt.content_type}
        ) as resp:
            raw = await resp.read()
        assert resp.status == 200
        for form in forms:
            assert form.encode() not in raw, f"{form!r} found in /config ({fmt})"
    for path in ("/status", "/storage/stats", "/health"):
        _, _, raw = await get_raw(stack, path, Accept="application/json")
        assert key.encode() not in raw


async def test_status_values(stack: Running) -> None:
    status, body = await stack.api.call("GET", "/status", fmt=J)
    assert status == 200
    assert body["version"] == __version__
    assert body["health"] == "healthy"
    assert body["uptime_seconds"] >= 0
    assert body["model"]["model_id"] == "insight/tiny-clap"
    assert body["model"]["status"] == "loaded"
    assert body["model"]["is_current"] is True
    assert {"inference", "storage", "bus", "storage-file"} <= set(body["features"])
    assert body["storage"]["mode"] == "file"
    assert body["storage"]["connected"] is True


async def test_storage_counts_move_after_upsert(stack: Running) -> None:
    _, before = await stack.api.call("GET", "/storage/stats", fmt=J)
    stats = before["stats"]
    assert stats["mode"] == "file" and stats["connected"] is True
    status, reply = await stack.api.call(
        "POST",
        "/tracks/upsert",
        {
            "track_id": "sys-count-1",
            "metadata": {"name": "Count"},
            "text_embedding": vec(1),
            "audio_embedding": vec(2),
        },
    )
    assert status == 200 and reply["text_stored"] and reply["audio_stored"]
    _, after = await stack.api.call("GET", "/storage/stats", fmt=J)
    a = after["stats"]
    assert a["text_collection_count"] == stats["text_collection_count"] + 1
    assert a["audio_collection_count"] == stats["audio_collection_count"] + 1
    assert a["total_tracks"] == max(a["text_collection_count"], a["audio_collection_count"])
    _, status_body = await stack.api.call("GET", "/status")
    assert status_body["storage"]["text_collection_count"] == a["text_collection_count"]
    # the same upsert again does not add a point (idempotent by track id)
    await stack.api.call(
        "POST",
        "/tracks/upsert",
        {"track_id": "sys-count-1", "metadata": {"name": "Count"}, "text_embedding": vec(1)},
    )
    _, again = await stack.api.call("GET", "/storage/stats", fmt=J)
    assert again["stats"]["text_collection_count"] == a["text_collection_count"]


# --- openapi / docs / metrics ----------------------------------------------------------------


async def test_openapi_document(stack: Running) -> None:
    status, ctype, body = await get_raw(stack, "/openapi.json")
    assert status == 200 and ctype.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == __version__
    paths = doc["paths"]
    expected = {
        ("get", "/api/v1/health"),
        ("get", "/api/v1/config"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/storage/stats"),
        ("post", "/api/v1/embed/text"),
        ("post", "/api/v1/embed/audio"),
        ("get", "/api/v1/tracks/{track_id}"),
        ("delete", "/api/v1/tracks/{track_id}"),
        ("post", "/api/v1/tracks/upsert"),
        ("post", "/api/v1/tracks/batch-upsert"),
        ("post", "/api/v1/tracks/embed-text"),
        ("post", "/api/v1/tracks/batch-embed-text"),
        ("post", "/api/v1/tracks/search"),
        ("post", "/api/v1/tracks/search-text"),
        ("post", "/api/v1/stream/start"),
        ("post", "/api/v1/stream/{session_id}/frames"),
        ("post", "/api/v1/stream/{session_id}/end"),
        ("get", "/api/v1/stream/{session_id}/status"),
        ("delete", "/api/v1/stream/{session_id}"),
    }
    have = {(m, p) for p, ops in paths.items() for m in ops}
    assert expected <= have, expected - have
    frames = paths["/api/v1/stream/{session_id}/frames"]["post"]
    assert "application/octet-stream" in frames["requestBody"]["content"]
    upsert = paths["/api/v1/tracks/upsert"]["post"]
    assert set(upsert["requestBody"]["content"]) == {"application/json", "application/msgpack"}
    assert upsert["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UpsertResponse"
    }
    assert "Error" in doc["components"]["schemas"]
    # every $ref resolves
    refs = {m for m in _refs(doc)}
    assert refs <= {f"#/components/schemas/{n}" for n in doc["components"]["schemas"]}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return out + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_docs_page(stack: Running) -> None:
    status, ctype, body = await get_raw(stack, "/docs")
    assert status == 200 and ctype.startswith("text/html")
    assert b"openapi.json" in body and b"<html" in body


async def test_metrics(stack: Running) -> None:
    await stack.api.call("GET", "/health")
    async with stack.api.session.get(stack.api.base.replace("/api/v1", "") + "/metrics") as resp:
        text = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert 'route="health"' in text
    assert "insight_" in text


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [Format.MSGPACK, J])
async def test_unknown_route_is_404_in_error_shape(stack: Running, fmt: Format) -> None:
    status, body = await stack.api.call("GET", "/no/such/route", fmt=fmt)
    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"
    assert "/api/v1/no/such/route" in body["error"]["message"]


@pytest.mark.parametrize("fmt", [Format.MSGPACK, J])
async def test_wrong_method_is_405(stack: Running, fmt: Format) -> None:
    status, body = await stack.api.call("PUT", "/health", fmt=fmt)
    assert status == 405
    assert body == {
        "error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": "Method Not Allowed: PUT /api/v1/health",
        }
    }
    status, body = await stack.api.call("GET", "/tracks/upsert", fmt=fmt)
    # GET /tracks/upsert is "get the track called upsert": an unknown track
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


async def test_degraded_health_without_model(running_no_model: Running) -> None:
    r = running_no_model
    status, body = await r.api.call("GET", "/health", fmt=J)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["model_loaded"] is False
    assert body["storage_ready"] is True
    msg = body["message"]
    assert "models/download" in msg or "INSIGHT_MODEL__PATH" in msg, msg
    status, body = await r.api.call("GET", "/status", fmt=J)
    assert status == 200 and body["health"] == "degraded" and body["model"] is None
    status, body = await r.api.call("GET", "/config", fmt=J)
    assert status == 200 and body["model"]["loaded"] is False


async def test_health_stays_open_with_api_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    r = await start_running(
        make_settings(tmp_path / "data", tiny_model_dir, server={"api_key": SERVER_KEY})
    )
    try:
        status, body = await r.api.call("GET", "/health", fmt=J)
        assert status == 200 and body["status"] == "healthy"
        for path in ("/config", "/status", "/storage/stats", "/openapi.json", "/docs"):
            status, body = await r.api.call("GET", path, fmt=J)
            assert status == 401, path
            assert body["error"]["code"] == "UNAUTHORIZED"
            assert "Authorization: Bearer" in body["error"]["message"]
        ok = {"Authorization": f"Bearer {SERVER_KEY}"}
        status, body = await r.api.call("GET", "/config", fmt=J, headers=ok)
        assert status == 200 and body["model"]["loaded"] is True
        assert SERVER_KEY not in json.dumps(body)
    finally:
        await stop_running(r)


@pytest.mark.parametrize(
    ("ctype", "accept", "expected"),
    [
        ("application/json", None, "application/json"),
        ("application/json", "*/*", "application/json"),
        ("application/json", "application/msgpack", "application/msgpack"),
        ("application/msgpack", None, "application/msgpack"),
        ("application/msgpack", "application/json", "application/json"),
    ],
)
async def test_reply_mirrors_the_body_when_accept_names_no_format(
    stack: Running, ctype: str, accept: str | None, expected: str
) -> None:
    body = {"text": "mirror"}
    data = json.dumps(body).encode() if "json" in ctype else msgpack.packb(body)
    headers = {"Content-Type": ctype, **({"Accept": accept} if accept else {})}
    async with stack.api.session.post(
        stack.api.base + "/embed/text", data=data, headers=headers
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == expected
        raw = await resp.read()
    reply = json.loads(raw) if "json" in expected else msgpack.unpackb(raw)
    assert reply["text"] == "mirror" and len(reply["embedding"]) == 512
