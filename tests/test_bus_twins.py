"""Every request/reply endpoint answers on the bus exactly as its HTTP twin does.

Each endpoint is called twice with the same input: over HTTP (JSON) and on the bus (msgpack,
subject ``insight.v1.<name>``). State-changing calls get the same starting state before each
call. Volatile fields (clocks, generated ids) are dropped before comparing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from insight.api import Endpoint
from insight.bus.client import BusClient
from insight.codec import Format, pack, unpack
from insight.handlers import all_endpoints
from tests.conftest import Running

VOLATILE = {
    "uptime_seconds",
    "age_seconds",
    "updated_at",
    "session_id",
    "started_at",
    "completed_at",
    "download_id",
    "eta_s",
    "rate_per_min",
}
NOW = int(time.time())


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


TRACK = {"name": "Song", "artists": ["Band"], "album": "LP", "genres": ["rock"]}
INTERACTIONS = [
    {"track_id": "t1", "play_count": 5, "is_favorite": True, "last_played": NOW - 3600},
    {"track_id": "t2", "play_count": 3, "last_played": NOW - 7200},
    {"track_id": "t3", "skip_count": 4, "last_played": NOW - 600},
]


@dataclass
class Case:
    body: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[BusClient], Awaitable[Any]] | None = None


async def seed_library(bus: BusClient) -> None:
    for i in range(1, 7):
        await bus.call(
            "insight.v1.tracks.upsert",
            {
                "track_id": f"t{i}",
                "metadata": {**TRACK, "name": f"Song {i}", "artists": [f"Band {i % 3}"]},
                "text_embedding": vec(i),
                "audio_embedding": vec(100 + i),
            },
        )


async def computed(bus: BusClient) -> None:
    await bus.call(
        "insight.v1.users.profile.compute", {"user_id": "u1", "interactions": INTERACTIONS}
    )


def call(subject: str, body: dict[str, Any] | None = None) -> Callable[[BusClient], Awaitable[Any]]:
    async def run(bus: BusClient) -> Any:
        try:
            return await bus.call(subject, body or {})
        except Exception:
            return None

    return run


async def started_session(bus: BusClient) -> str:
    reply = await bus.call(
        "insight.v1.stream.start",
        {
            "track_id": "live",
            "metadata": TRACK,
            "format": "pcm_s16_le",
            "sample_rate": 48000,
            "channels": 1,
        },
    )
    return str(reply["session_id"])


PCM = (np.sin(np.arange(48000 * 4) / 20) * 8000).astype("<i2").tobytes()

CASES: dict[str, Case] = {
    "health": Case(),
    "config": Case(),
    "status": Case(),
    "storage.stats": Case(),
    "storage.spaces": Case(),
    "storage.spaces.drop": Case({"space": "m-nobody-000000-d8"}),  # 404 both ways
    "embed.text": Case({"text": "calm piano"}),
    "embed.audio": Case({"format": "pcm_s16_le", "sample_rate": 48000, "channels": 1, "data": PCM}),
    "tracks.get": Case({"track_id": "t1", "include_text": True, "include_audio": True}),
    "tracks.delete": Case(
        {"track_id": "gone"},
        setup=call(
            "insight.v1.tracks.upsert",
            {"track_id": "gone", "metadata": TRACK, "text_embedding": vec(9)},
        ),
    ),
    "tracks.upsert": Case(
        {
            "track_id": "t1",
            "metadata": {**TRACK, "name": "Song 1", "artists": ["Band 1"]},
            "text_embedding": vec(1),
            "audio_embedding": vec(101),
        }
    ),
    "tracks.batch-upsert": Case(
        {
            "tracks": [
                {"track_id": "b1", "metadata": TRACK, "text_embedding": vec(21)},
                {"track_id": "b2", "metadata": TRACK, "text_embedding": [0.5, 0.5]},
            ]
        }
    ),
    "tracks.embed-text": Case(
        {"track_id": "e1", "metadata": {**TRACK, "metadata_hash": "h"}},
        setup=call("insight.v1.tracks.delete", {"track_id": "e1"}),
    ),
    "tracks.batch-embed-text": Case({"tracks": [{"track_id": "e2", "metadata": TRACK}]}),
    "tracks.search": Case({"embedding": vec(2), "collection": "text", "limit": 3}),
    "tracks.search-text": Case({"query": "rock song", "limit": 3}),
    "stream.start": Case(
        {
            "track_id": "s",
            "metadata": TRACK,
            "format": "pcm_f32_le",
            "sample_rate": 44100,
            "channels": 2,
        }
    ),
    "stream.frames": Case({"session_id": "0b4e28ba-2fa1-11d2-883f-0016d3cca427", "data": PCM}),
    "stream.end": Case({"session_id": "0b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
    "stream.status": Case({"session_id": "not-a-uuid"}),
    "stream.abort": Case({"session_id": "0b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
    "mood.classify": Case({"track_id": "t1", "tiers": ["primary", "contextual"]}),
    "mood.list": Case(),
    "users.profile.compute": Case({"user_id": "u1", "interactions": INTERACTIONS}),
    "users.recommend": Case({"user_id": "u1", "limit": 3}, setup=computed),
    "users.profile.vector": Case({"user_id": "u1"}, setup=computed),
    "users.profile.delete": Case({"user_id": "u1", "profile_type": "global"}, setup=computed),
    "users.profiles.delete": Case({"user_id": "u1"}, setup=computed),
    "users.listens": Case({"user_id": "u1", "limit": 10}),
    "tracks.similar": Case({"track_id": "t1", "limit": 3}),
    "tracks.similar-filtered": Case(
        {"track_id": "t1", "limit": 3, "filter": {"artists": ["band 2"]}}
    ),
    "tracks.similar-multi": Case({"track_ids": ["t1", "t2"], "negative_ids": ["t3"], "limit": 3}),
    "radio.next": Case({"seed_ids": ["t1"], "recent_ids": ["t2"], "count": 3}),
    "models.list": Case(),
    "models.download": Case({"model_id": "../escape"}),
    "models.downloads": Case(),
    "models.downloads.cancel": Case({"download_id": "nope"}),
    "models.reembed": Case(),
    "models.load": Case({"model_id": "nobody/nothing"}),
    "models.delete": Case({"model_id": "nobody/nothing"}),
    "models.migration": Case(),
    "models.migration.cancel": Case(),  # none running: the same answer both ways
    "watcher.status": Case(),
    "watcher.start": Case(setup=call("insight.v1.watcher.stop")),
    "watcher.stop": Case(setup=call("insight.v1.watcher.start")),
    "watcher.pause": Case(setup=call("insight.v1.watcher.resume")),
    "watcher.resume": Case(setup=call("insight.v1.watcher.pause")),
    "watcher.scan": Case({"force": False}),
    "watcher.folders": Case(),
    "watcher.folders.add": Case({"path": "/definitely/not/here"}),
    "watcher.folders.remove": Case({"path": "/not/watched"}),
    "tracks.path": Case({"start_id": "t1", "end_id": "t2", "steps": 4}),
    "mixes.build": Case({"user_id": "u1", "size": 3}, setup=computed),
    "playlists.cluster": Case(
        {"clusters": 2}, setup=call("insight.v1.playlists.cluster", {"clusters": 2})
    ),
    "playlists.list": Case(),
    "playlists.get": Case({"playlist_id": "nope"}),
    "playlists.delete": Case({"playlist_id": "nope"}),
    "playlists.m3u8": Case({"playlist_id": "nope"}),
    "map.get": Case({"limit": 5}),
    "users.history": Case({"user_id": "u1"}),
}


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def over_http(r: Running, ep: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    path = ep.path
    rest = dict(body)
    for name in ep.path_params:
        value = quote(str(rest.pop(name)), safe="")
        path = path.replace(f"{{{name}:.+}}", value).replace(f"{{{name}}}", value)
    if ep.body == "raw":
        return await r.api.call(
            ep.method,
            path,
            raw=rest["data"],
            headers={"Content-Type": "application/octet-stream"},
            fmt=Format.JSON,
        )
    if ep.body == "none":
        query = "&".join(
            f"{k}={quote(str(v).lower() if isinstance(v, bool) else str(v))}"
            for k, v in rest.items()
        )
        return await r.api.call(ep.method, path + (f"?{query}" if query else ""), fmt=Format.JSON)
    return await r.api.call(ep.method, path, rest, fmt=Format.JSON)


async def over_bus(r: Running, ep: Endpoint, body: dict[str, Any]) -> tuple[int, Any]:
    reply = await r.bus.request_raw(ep.subject, pack(body))
    return reply.status, unpack(reply.data) if reply.data else None


def test_every_endpoint_has_a_case() -> None:
    assert {ep.name for ep in all_endpoints()} == set(CASES)


async def test_bus_and_http_give_the_same_answers(running: Running) -> None:
    await seed_library(running.bus)
    differences = []
    for ep in all_endpoints():
        case = CASES[ep.name]
        if case.setup:
            await case.setup(running.bus)
        http_status, http_body = await over_http(running, ep, case.body)
        if case.setup:
            await case.setup(running.bus)
        bus_status, bus_body = await over_bus(running, ep, case.body)
        if http_status == 204:  # DELETE twins answer 204 with no body over HTTP
            http_status, http_body = 200, bus_body
        if http_status != bus_status or not same(strip(http_body), strip(bus_body)):
            differences.append((ep.name, http_status, bus_status, http_body, bus_body))
    assert not differences, differences


@pytest.mark.parametrize("name", ["users.recommend", "tracks.similar", "mood.classify"])
async def test_twins_answer_with_values(running: Running, name: str) -> None:
    """Not only equal: the replies carry the values those endpoints are for."""
    await seed_library(running.bus)
    ep = next(e for e in all_endpoints() if e.name == name)
    case = CASES[name]
    if case.setup:
        await case.setup(running.bus)
    status, body = await over_bus(running, ep, case.body)
    assert status == 200, body
    if name == "mood.classify":
        assert body["primary_mood"] in body["moods"]
        assert -1 <= body["valence"] <= 1 and -1 <= body["arousal"] <= 1
    else:
        key = "tracks" if name == "users.recommend" else "results"
        ids = [t["track_id"] for t in body[key]]
        assert ids and "t1" not in ids and len(set(ids)) == len(ids)


async def test_two_workers_share_requests(
    running: Running, tmp_path: Any, tiny_model_dir: Any
) -> None:
    from tests.busutil import in_process_worker, service_instances

    other = await in_process_worker(
        running.stack.nats_url,
        tmp_path / "second",
        tiny_model_dir,
        nats={"auth_file": running.stack.settings.nats.auth_path},
        storage={"enabled": False},  # store-less: no second store to split the data
    )
    try:
        nc = running.bus.nc
        assert len(await service_instances(nc, expect=2)) == 2
        for _ in range(200):
            await running.bus.call("insight.v1.health")
        served = []
        for sid in await service_instances(nc, expect=2):
            msg = await nc.request(f"$SRV.STATS.insight.{sid}", b"", timeout=2)
            endpoints = unpack(msg.data, Format.JSON)["endpoints"]
            served.append(sum(e["num_requests"] for e in endpoints if e["name"] == "health"))
        assert sum(served) >= 200 and all(n > 0 for n in served), served
    finally:
        await other.stop()
