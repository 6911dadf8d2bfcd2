"""The Music Assistant adapter against a loopback MA stand-in, a real nats-server and worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
import pytest_asyncio
from fake_music_assistant import FakeMusicAssistant, ma_played, ma_track
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.embedded import EmbeddedNats
from insight.bus.streams import ensure_streams
from insight.codec import unpack
from insight.integrations import ma_events
from insight.integrations.ma_client import MAAuthError, websocket_url
from insight.integrations.music_assistant import (
    PER_USER_FAVORITES_SCHEMA,
    BridgeOptions,
    MusicAssistantBridge,
)

Event = tuple[str, str | None, Any]


async def wait_for(cond: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {limit_s}s waiting for {what}")


@contextlib.asynccontextmanager
async def bridge_running(
    fake: FakeMusicAssistant, nc: NATS, token: str | None = None, **options: Any
) -> AsyncIterator[MusicAssistantBridge]:
    opts = BridgeOptions(**{"backoff_min_s": 0.05, "backoff_max_s": 0.2, **options})
    bridge = MusicAssistantBridge(fake.url, token or fake.token, nc, opts)
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 10)


@pytest_asyncio.fixture
async def fake_ma() -> AsyncIterator[FakeMusicAssistant]:
    fake = FakeMusicAssistant([ma_track(n) for n in range(1, 46)])
    await fake.start()
    yield fake
    await fake.stop()


@pytest_asyncio.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


async def stream_messages(nc: NATS) -> list[Any]:
    js = nc.jetstream()
    info = await js.stream_info(subjects.EVENTS_STREAM)
    return [
        await js.get_msg(subjects.EVENTS_STREAM, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
        if info.state.messages
    ]


async def stream_count(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
    return int(info.state.messages)


# --- pure translation -------------------------------------------------------------------


def test_websocket_url() -> None:
    assert websocket_url("http://ma:8095") == "ws://ma:8095/ws"
    assert websocket_url("https://ma.example/") == "wss://ma.example/ws"
    assert websocket_url("ws://ma:8095/ws") == "ws://ma:8095/ws"


def test_msg_ids_name_observations_not_content() -> None:
    track = ma_track(7)
    ids = ma_events.Observations("run1")
    msg = {"event": "media_item_updated", "object_id": track["uri"], "data": track}
    first, again = ma_events.translate(msg, ids.next()), ma_events.translate(msg, ids.next())
    assert first is not None and again is not None and first.subject == subjects.TRACK_UPDATED
    assert (first.msg_id, again.msg_id) == ("ma-run1-1", "ma-run1-2")  # A→B→A applies
    assert first.payload["metadata_hash"] == again.payload["metadata_hash"]
    assert first.headers["Content-Type"] == "application/msgpack"
    assert ma_events.Observations().run != ma_events.Observations().run


def test_every_progress_report_and_both_sync_endings_are_forwarded() -> None:
    ids = ma_events.Observations("r")
    playing = ma_played(7, "alice", seconds=20, is_playing=True)
    out = ma_events.translate(
        {"event": "media_item_played", "object_id": playing["uri"], "data": playing},
        ids.next(),
        5.0,
    )
    assert out is not None and out.subject == subjects.PLAYED and out.payload["timestamp"] == 5.0
    assert ma_events.sync_finished("sync_tasks_updated", [])
    assert not ma_events.sync_finished("sync_tasks_updated", [{"provider_domain": "x"}])
    assert ma_events.sync_finished("music_sync_completed", None)
    done = ma_events.translate({"event": "sync_tasks_updated", "data": []}, ids.next())
    assert done is not None and done.subject == subjects.SYNC_COMPLETED
    album = {
        "event": "media_item_added",
        "object_id": "library://album/1",
        "data": {"media_type": "album"},
    }
    assert ma_events.translate(album, ids.next()) is None
    fav = ma_events.favorite_updated(
        {
            "event": "favorite_updated",
            "object_id": "spotify://track/x",
            "data": {
                "user_id": "bob",
                "media_type": "track",
                "item_id": "x",
                "uri": "spotify://track/x",
                "favorite": None,
            },
        },
        "id",
        1.0,
        {"spotify://track/x": "library://track/3"},
    )
    assert fav is not None and fav.subject == subjects.UNFAVORITE
    assert fav.payload["user_id"] == "bob" and fav.payload["track_id"] == "library://track/3"


def test_favorite_tracker() -> None:
    fav = ma_events.FavoriteTracker("user-a")
    ids = ma_events.Observations("r")
    a, b = ma_track(1, favorite=True), ma_track(2)
    first = fav.observe([a, b], 10, ids)
    assert [(o.subject, o.payload["track_id"]) for o in first] == [
        (subjects.FAVORITE, "library://track/1")
    ]
    assert fav.observe([a, b], 11, ids) == []
    flipped = fav.observe([ma_track(1)], 12, ids)
    assert [o.subject for o in flipped] == [subjects.UNFAVORITE]
    assert flipped[0].payload == {
        "user_id": "user-a",
        "track_id": "library://track/1",
        "timestamp": 12,
    }
    assert fav.favorites() == []


async def test_dropped_websocket_reconnects_and_resumes(
    fake_ma: FakeMusicAssistant, nc: NATS
) -> None:
    await ensure_streams(nc.jetstream())
    async with bridge_running(fake_ma, nc, page_size=100) as bridge:
        await asyncio.wait_for(fake_ma.authed.wait(), 5)
        await wait_for(lambda: _true(bridge.stats.backfills == 1), 10, "initial backfill")
        await fake_ma.emit("media_item_added", "library://track/100", ma_track(100))
        await fake_ma.drop()  # MA restarts: the socket closes under the bridge
        await asyncio.wait_for(fake_ma.authed.wait(), 10)
        assert fake_ma.connects == 2 and fake_ma.auths == 2
        await fake_ma.emit("media_item_added", "library://track/101", ma_track(101))
        await wait_for(lambda: _true(bridge.stats.backfills == 2), 10, "a catch-up backfill")
        await bridge.drained()
    assert bridge.stats.connections == 2 and bridge.favorites.user_id == "user-a"
    assert not [c for c in fake_ma.commands if c["command"] == "auth/me"]  # auth named it
    msgs = await stream_messages(nc)
    # Two complete listings (45 tracks, framed by markers, + a favorites snapshot) + 2 events.
    assert Counter(m.subject for m in msgs) == {
        subjects.TRACK_UPDATED: 90,
        subjects.TRACK_ADDED: 2,
        subjects.BACKFILL_STARTED: 2,
        subjects.BACKFILL_COMPLETED: 2,
        subjects.FAVORITES_SNAPSHOT: 2,
    }
    ids = [m.headers["Nats-Msg-Id"] for m in msgs if m.headers]
    assert len(ids) == len(msgs) == len(set(ids))


async def test_waits_for_the_stream_and_stops_on_a_refused_token(
    nats_server: EmbeddedNats,
) -> None:
    """No stream yet (no worker): publishing retries until it exists. A bad token: stops."""
    client = await nats.connect(nats_server.url)
    fake = FakeMusicAssistant([ma_track(1)])
    await fake.start()
    try:
        async with bridge_running(fake, client) as bridge:
            await wait_for(lambda: _true(bridge.stats.publish_errors > 0), 10, "a failed publish")
            await ensure_streams(client.jetstream())
            await wait_for(lambda: _true(bridge.stats.backfills == 1), 10, "publish after retry")
        for token in ("stale", ""):
            bridge = MusicAssistantBridge(
                fake.url, token, client, BridgeOptions(backoff_min_s=0.05)
            )
            with pytest.raises(MAAuthError, match="token"):
                await asyncio.wait_for(bridge.run(), 10)
            assert bridge.stats.connections == 0
        assert fake.auths == 2  # the good one, the stale one once; the missing one never sent
    finally:
        await fake.stop()
        await client.drain()


async def test_per_user_favorites_from_newer_ma(nc: NATS) -> None:
    """From the schema with ``favorite_updated``, favorites are per MA user; the ``favorite``
    flag of a broadcast item update (the acting user's state) is not booked to anyone."""
    await ensure_streams(nc.jetstream())
    fake = FakeMusicAssistant([ma_track(1), ma_track(2)], schema=PER_USER_FAVORITES_SCHEMA)
    fake.auth_names_user = False  # then the bridge asks auth/me
    await fake.start()
    try:
        async with bridge_running(fake, nc) as bridge:
            await wait_for(lambda: _true(bridge.stats.backfills == 1), 10, "the backfill")
            assert bridge.per_user_favorites and bridge.favorites.user_id == "user-a"
            assert [c["command"] for c in fake.commands][:2] == ["auth", "auth/me"]

            def fav(user: str, n: int, state: bool | None) -> dict[str, Any]:
                uri = f"library://track/{n}"
                data = {"user_id": user, "media_type": "track", "item_id": str(n), "uri": uri}
                return {**data, "favorite": state}

            await fake.emit("favorite_updated", "library://track/1", fav("user-b", 1, True))
            await fake.emit("favorite_updated", "library://track/2", fav("user-a", 2, True))
            await fake.emit("media_item_updated", "library://track/1", ma_track(1, favorite=True))
            await fake.emit("favorite_updated", "library://track/1", fav("user-b", 1, None))
            await wait_for(lambda: _true(bridge.stats.events == 4), 10, "4 events")
            await bridge.drained()
    finally:
        await fake.stop()
    msgs = await stream_messages(nc)
    favs = [
        (m.subject.rsplit(".", 1)[-1], unpack(m.data)["user_id"], unpack(m.data)["track_id"])
        for m in msgs
        if m.subject in (subjects.FAVORITE, subjects.UNFAVORITE)
    ]
    assert favs == [
        ("favorite", "user-b", "library://track/1"),
        ("favorite", "user-a", "library://track/2"),
        ("unfavorite", "user-b", "library://track/1"),
    ]


async def test_a_message_over_the_max_payload_does_not_stall_the_rest(nc: NATS) -> None:
    await ensure_streams(nc.jetstream())
    huge = ma_track(1)
    huge["metadata"] = {**huge["metadata"], "style": "la " * (nc.max_payload // 3 + 1)}
    lyrics = ma_track(3)  # long lyrics are not sent (insight never reads them)
    lyrics["metadata"] = {**lyrics["metadata"], "lyrics": "la " * (nc.max_payload // 3 + 1)}
    fake = FakeMusicAssistant([huge, ma_track(2), lyrics])
    await fake.start()
    try:
        async with bridge_running(fake, nc) as bridge:
            await wait_for(lambda: _true(bridge.stats.backfills == 1), 10, "the backfill")
            await bridge.drained()
    finally:
        await fake.stop()
    assert bridge.stats.too_large == 1
    updated = [unpack(m.data).get("object_id") for m in await stream_messages(nc)]
    assert "library://track/2" in updated and "library://track/1" not in updated
    assert "library://track/3" in updated


async def test_garbage_from_ma_is_skipped_and_the_bridge_goes_on(nc: NATS) -> None:
    await ensure_streams(nc.jetstream())
    fake = FakeMusicAssistant([])
    await fake.start()
    garbage: list[Any] = [
        [1, 2],
        {"event": "media_item_added", "object_id": 5, "data": "x"},
        {"event": "media_item_added", "object_id": "library://track/1", "data": {"media_type": 3}},
        {"event": "media_item_played", "object_id": None, "data": {"uri": 7}},
        {"event": "media_item_played", "object_id": "x://track/1", "data": {"userid": []}},
        {"event": "favorite_updated", "object_id": None, "data": {"user_id": "u", "uri": None}},
        {"event": "sync_tasks_updated", "object_id": None, "data": "x"},
        {"event": "media_item_deleted", "object_id": {"a": 1}, "data": None},
    ]
    try:
        async with bridge_running(fake, nc, backfill_on_connect=False) as bridge:
            await asyncio.wait_for(fake.authed.wait(), 5)
            await fake.emit_raw("not json {")
            for item in garbage:
                await fake.emit_raw(json.dumps(item))
            await fake.emit("media_item_added", "library://track/9", ma_track(9))
            await wait_for(lambda: _true(bridge.stats.published >= 1), 10, "the valid event")
            await bridge.drained()
            assert bridge.connected.is_set() and bridge.stats.connections == 1
    finally:
        await fake.stop()
    subjects_seen = [m.subject for m in await stream_messages(nc)]
    assert subjects_seen[-1] == subjects.TRACK_ADDED


async def _true(value: bool) -> bool:
    return value


pytestmark = pytest.mark.timeout(120)


def test_ma_bridge_command_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from insight.integrations.cli import add_commands, cmd_ma_bridge, read_token

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    args = parser.parse_args(
        ["ma-bridge", "--ma-url", "http://ma:8095", "--ma-token-file", str(token_file)]
    )
    assert args.func is cmd_ma_bridge and args.user_id is None
    assert read_token(args.ma_token_file) == "s3cret"
    monkeypatch.setenv("MA_TOKEN", "from-env")
    assert read_token(None) == "from-env"
    # Not taken for --ma-token-file; still accepted (deprecated: ps shows it).
    assert parser.parse_args(["ma-bridge", "--ma-token", "t"]).ma_token_file is None


async def test_cli_stops_with_a_clear_error_on_a_refused_token(
    nats_server: EmbeddedNats, tmp_path: Any
) -> None:
    """The command a user runs: env config, a token file, exit code 3 instead of retrying."""
    import os
    import sys

    fake = FakeMusicAssistant([ma_track(1)])
    await fake.start()
    token_file = tmp_path / "token"
    token_file.write_text("stale\n")
    env = {
        **os.environ,
        "MA_URL": fake.url,
        "MA_TOKEN_FILE": str(token_file),
        "INSIGHT_NATS__URL": nats_server.url,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "insight.cli",
            "ma-bridge",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await fake.stop()
    assert proc.returncode == 3, err.decode()[-2000:]
    assert "refused the connection" in err.decode() and "MA_TOKEN" in err.decode()
    assert fake.auths == 1 and [c["args"] for c in fake.commands] == [{"token": "stale"}]
