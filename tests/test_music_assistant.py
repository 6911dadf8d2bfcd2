"""The Music Assistant adapter against a loopback MA stand-in, a real nats-server and worker."""

from __future__ import annotations

import asyncio
import contextlib
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
from insight.integrations.ma_client import websocket_url
from insight.integrations.music_assistant import BridgeOptions, MusicAssistantBridge

Event = tuple[str, str | None, Any]


def hundred_events() -> list[Event]:
    """100 MA-shaped events: the mix a real library and a few listeners produce."""
    ev: list[Event] = []
    ev += [("media_item_added", f"library://track/{n}", ma_track(n)) for n in range(1, 51)]
    ev += [("media_item_added", f"library://track/{n}", ma_track(n)) for n in range(1, 5)]
    ev += [
        ("media_item_updated", f"library://track/{n}", ma_track(n, genre="jazz", favorite=n <= 5))
        for n in range(1, 16)
    ]
    ev += [("media_item_deleted", f"library://track/{n}", ma_track(n)) for n in range(46, 51)]
    for n in range(1, 11):
        user, full = ("alice", True) if n <= 5 else ("bob", False)
        seconds = float(180 + n) if full else 10.0
        ev.append(
            (
                "media_item_played",
                f"library://track/{n}",
                ma_played(n, user, seconds=seconds / 2, is_playing=True),
            )
        )
        ev.append(
            (
                "media_item_played",
                f"library://track/{n}",
                ma_played(n, user, seconds=seconds, is_playing=False),
            )
        )
    ev += [
        (
            "media_item_added",
            "library://album/1",
            {
                "item_id": "1",
                "provider": "library",
                "name": "Album 1",
                "media_type": "album",
                "uri": "library://album/1",
            },
        ),
        ("player_updated", "player-1", {"player_id": "player-1", "state": "playing"}),
        ("queue_time_updated", "player-1", 42),
        (
            "media_item_updated",
            "library://artist/1",
            {
                "item_id": "1",
                "name": "Artist 1",
                "media_type": "artist",
                "uri": "library://artist/1",
            },
        ),
        (
            "media_item_played",
            "library://radio/1",
            {
                "uri": "library://radio/1",
                "media_type": "radio",
                "name": "Radio",
                "duration": 0,
                "seconds_played": 300,
                "fully_played": False,
                "is_playing": False,
                "userid": "alice",
            },
        ),
    ]
    ev.append(("music_sync_completed", None, {"providers": ["filesystem_local--abc"]}))
    assert len(ev) == 100
    return ev


def library_after_events() -> list[dict[str, Any]]:
    """What MA's library holds once the 100 events happened (the backfill reads it)."""
    return [ma_track(n, genre="jazz", favorite=n <= 5) for n in range(1, 16)] + [
        ma_track(n) for n in range(16, 46)
    ]


EXPECTED_SUBJECTS = {
    subjects.TRACK_ADDED: 50,  # 4 exact repeats deduped
    subjects.TRACK_UPDATED: 45,  # 15 events + 30 backfilled (the other 15 dedupe)
    subjects.TRACK_DELETED: 5,
    subjects.PLAYED: 10,  # final reports only
    subjects.SYNC_COMPLETED: 1,
    subjects.FAVORITE: 5,
}


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
    fake = FakeMusicAssistant(library_after_events())
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


def test_translate_shapes_and_ids() -> None:
    track = ma_track(7)
    out = ma_events.translate(
        {"event": "media_item_added", "object_id": track["uri"], "data": track}
    )
    assert out is not None and out.subject == subjects.TRACK_ADDED
    assert out.payload["object_id"] == "library://track/7" and out.payload["data"] is track
    assert out.payload["metadata_hash"] == ma_events.metadata_hash(track)
    # Same content → same id; a changed genre → another id and another hash.
    again = ma_events.translate(
        {"event": "media_item_added", "object_id": track["uri"], "data": ma_track(7)}
    )
    changed = ma_events.translate(
        {"event": "media_item_added", "object_id": track["uri"], "data": ma_track(7, genre="jazz")}
    )
    assert again is not None and changed is not None
    assert again.msg_id == out.msg_id != changed.msg_id
    # Artist objects and plain names hash alike.
    named = {**track, "artists": [a["name"] for a in track["artists"]]}
    assert ma_events.metadata_hash(named) == ma_events.metadata_hash(track)
    # Only tracks, only final plays.
    assert (
        ma_events.translate(
            {
                "event": "media_item_added",
                "object_id": "library://album/1",
                "data": {"media_type": "album"},
            }
        )
        is None
    )
    playing = ma_played(7, "alice", seconds=20, is_playing=True)
    assert (
        ma_events.translate(
            {"event": "media_item_played", "object_id": playing["uri"], "data": playing}
        )
        is None
    )
    done = ma_played(7, "alice", seconds=187, is_playing=False)
    played = ma_events.translate(
        {"event": "media_item_played", "object_id": done["uri"], "data": done}, now=123
    )
    assert played is not None and played.subject == subjects.PLAYED
    assert played.payload["timestamp"] == 123 and played.payload["data"]["userid"] == "alice"


def test_favorite_tracker() -> None:
    fav = ma_events.FavoriteTracker("default")
    a, b = ma_track(1, favorite=True), ma_track(2)
    first = fav.observe([a, b], 10)
    assert [(o.subject, o.payload["track_id"]) for o in first] == [
        (subjects.FAVORITE, "library://track/1")
    ]
    assert fav.observe([a, b], 11) == []
    flipped = fav.observe([ma_track(1)], 12)
    assert [o.subject for o in flipped] == [subjects.UNFAVORITE]
    assert flipped[0].payload == {
        "user_id": "default",
        "track_id": "library://track/1",
        "timestamp": 12,
    }


# --- against the bus ----------------------------------------------------------------------


async def test_hundred_events_reach_the_stream_deduped(
    fake_ma: FakeMusicAssistant, nc: NATS
) -> None:
    await ensure_streams(nc.jetstream())
    async with bridge_running(fake_ma, nc, backfill_on_connect=False, page_size=20) as bridge:
        await asyncio.wait_for(fake_ma.authed.wait(), 5)
        for event, object_id, data in hundred_events():
            await fake_ma.emit(event, object_id, data)

        async def settled() -> bool:
            return (
                bridge.stats.events == 100
                and bridge.stats.backfills == 1
                and bridge.queue.empty()
                and await stream_count(nc) >= sum(EXPECTED_SUBJECTS.values())
            )

        await wait_for(settled, 20, "100 events + backfill on the stream")
        await bridge.drained()

    msgs = await stream_messages(nc)
    assert Counter(m.subject for m in msgs) == EXPECTED_SUBJECTS
    assert bridge.stats.ignored == 15  # 10 progress reports + 5 non-track events
    assert bridge.stats.duplicates == 19  # 4 repeats + 15 backfilled unchanged tracks
    assert bridge.stats.backfilled_tracks == 45
    pages = [c for c in fake_ma.commands if c["command"] == "music/tracks/library_items"]
    assert [c["args"] for c in pages] == [
        {"limit": 20, "offset": 0},
        {"limit": 20, "offset": 20},
        {"limit": 20, "offset": 40},
    ]
    ids = [m.headers["Nats-Msg-Id"] for m in msgs if m.headers]
    assert len(ids) == len(msgs) == len(set(ids))
    by_subject: dict[str, list[Any]] = {}
    for m in msgs:
        by_subject.setdefault(m.subject, []).append(unpack(m.data))
    added = by_subject[subjects.TRACK_ADDED][0]
    assert added["event"] == "media_item_added" and added["object_id"] == "library://track/1"
    assert added["data"]["name"] == "Song 1" and len(added["metadata_hash"]) == 32
    updated = {p["object_id"]: p for p in by_subject[subjects.TRACK_UPDATED]}
    assert updated["library://track/3"]["data"]["metadata"]["genres"] == ["jazz"]
    assert updated["library://track/30"]["event"] == "media_item_updated"
    played = by_subject[subjects.PLAYED]
    assert {p["data"]["userid"] for p in played} == {"alice", "bob"}
    assert all(p["data"]["is_playing"] is False for p in played)
    favs = by_subject[subjects.FAVORITE]
    assert sorted(f["track_id"] for f in favs) == [f"library://track/{n}" for n in range(1, 6)]
    assert by_subject[subjects.SYNC_COMPLETED][0]["event"] == "music_sync_completed"


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

        async def resumed() -> bool:
            # The library, its 5 favorites, and the 2 events around the drop.
            expected = 45 + 5 + 2
            return (
                bridge.stats.backfills == 2
                and bridge.queue.empty()
                and await stream_count(nc) == expected
            )

        await wait_for(resumed, 10, "events after the reconnect and a catch-up backfill")
        await bridge.drained()

    assert bridge.stats.connections == 2
    # The catch-up backfill republished the library; JetStream kept none of it twice.
    assert bridge.stats.duplicates == 45
    uris = {unpack(m.data).get("object_id") for m in await stream_messages(nc)}
    assert {"library://track/100", "library://track/101"} <= uris


async def test_waits_for_the_stream_and_rejected_token(nats_server: EmbeddedNats) -> None:
    """No stream yet (no worker): publishing retries until it exists. A bad token: retries."""
    client = await nats.connect(nats_server.url)
    fake = FakeMusicAssistant([ma_track(1)])
    await fake.start()
    try:
        async with bridge_running(fake, client) as bridge:
            await wait_for(lambda: _true(bridge.stats.publish_errors > 0), 10, "a failed publish")
            await ensure_streams(client.jetstream())
            await wait_for(lambda: _true(bridge.stats.published == 1), 10, "publish after retry")
        async with bridge_running(fake, client, token="stale") as bridge:
            await wait_for(lambda: _true(fake.auths >= 3), 10, "auth retries")
            assert bridge.stats.connections == 0
    finally:
        await fake.stop()
        await client.drain()


async def _true(value: bool) -> bool:
    return value


# --- into a running worker ----------------------------------------------------------------


async def test_hundred_events_into_the_store_and_history(
    running: Any, fake_ma: FakeMusicAssistant
) -> None:
    client = await nats.connect(running.stack.nats_url, **running.stack.client_options())
    store, history = running.app.require_store(), running.app.services["history"]
    try:
        async with bridge_running(fake_ma, client, backfill_on_connect=False) as bridge:
            await asyncio.wait_for(fake_ma.authed.wait(), 5)
            for event, object_id, data in hundred_events():
                await fake_ma.emit(event, object_id, data)
            await wait_for(lambda: _true(bridge.stats.backfills >= 1), 20, "the sync backfill")
            await bridge.drained()

            async def applied() -> bool:
                alice = await history.tracks("alice")
                return await store.count("tracks_text") == 45 and len(alice) == 5

            await wait_for(applied, 60, "the worker to apply the events")
    finally:
        await client.drain()

    assert not await store.exists("tracks_text", "library://track/48")
    [p] = await store.get("tracks_text", ["library://track/3"])
    assert p.payload["genres"] == ["jazz"] and p.payload["name"] == "Song 3"
    alice = {t.track_id: t for t in await history.tracks("alice")}
    assert all(t.play_count == 1 and t.skip_count == 0 for t in alice.values())
    bob = {t.track_id: t for t in await history.tracks("bob")}
    assert len(bob) == 5
    assert all(t.skip_count == 1 for t in bob.values())
    default = {t.track_id for t in await history.tracks("default") if t.is_favorite}
    assert default == {f"library://track/{n}" for n in range(1, 6)}


pytestmark = pytest.mark.timeout(120)


def test_ma_bridge_command_line() -> None:
    import argparse

    from insight.integrations.cli import add_commands, cmd_ma_bridge

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "ma-bridge",
            "--ma-url",
            "http://ma:8095",
            "--ma-token",
            "t",
            "--nats-url",
            "nats://n:4222",
        ]
    )
    assert args.func is cmd_ma_bridge
    assert (args.ma_url, args.ma_token, args.nats_url, args.page_size) == (
        "http://ma:8095",
        "t",
        "nats://n:4222",
        500,
    )
