"""Library and playback events on JetStream: idempotent, ordered, dead-lettered, crash-safe."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgpack
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.connection import flush_subscriptions
from insight.bus.embedded import EmbeddedNats
from insight.config import StorageSettings
from insight.runtime import Worker
from insight.storage.base import TRACKS_TEXT
from insight.storage.factory import open_store
from tests.busutil import WorkerProcess, drained, in_process_worker, stored_names, track_event


async def test_added_updated_deleted_and_history(bus: NATS, worker: Worker) -> None:
    js = bus.jetstream()
    await js.publish(subjects.TRACK_ADDED, track_event("library://track/1", "One"))
    await js.publish(subjects.TRACK_ADDED, track_event("library://track/2", "Two"))
    await js.publish(subjects.TRACK_UPDATED, track_event("library://track/1", "One (remaster)"))
    await js.publish(
        subjects.TRACK_DELETED, track_event("library://track/2", "Two", kind="deleted")
    )
    played = {
        "event": "media_item_played",
        "object_id": "library://track/1",
        "data": {
            "uri": "library://track/1",
            "media_type": "track",
            "name": "One",
            "duration": 200,
            "seconds_played": 195,
            "fully_played": True,
            "is_playing": False,
            "userid": "alice",
            "timestamp": 1_700_000_000,
        },
    }
    still_playing = {**played, "data": {**played["data"], "is_playing": True}}
    await js.publish(subjects.PLAYED, msgpack.packb(still_playing))
    await js.publish(subjects.PLAYED, msgpack.packb(played))
    await js.publish(
        subjects.FAVORITE,
        msgpack.packb(
            {"user_id": "alice", "track_id": "library://track/9", "timestamp": 1_700_000_100}
        ),
    )
    await drained(js, subjects.LIBRARY_CONSUMER)
    await drained(js, subjects.playback_consumer(worker.app.instance_id))

    assert await stored_names(worker) == {"library://track/1": "One (remaster)"}
    [point] = await worker.app.require_store().get(TRACKS_TEXT, ["library://track/1"])
    assert point.payload["artists"] == ["Artist 1"] and point.payload["album"] == "Album"
    assert point.payload["genres"] == ["rock"] and point.payload["source"] == "event"
    history = {h.track_id: h for h in await worker.app.services.history.tracks("alice")}
    assert history["library://track/1"].play_count == 1  # the in-progress report is ignored
    assert history["library://track/9"].is_favorite


async def test_unchanged_metadata_hash_is_not_reembedded(bus: NATS, worker: Worker) -> None:
    js = bus.jetstream()
    pool = worker.app.require_pool()
    await js.publish(subjects.TRACK_ADDED, track_event("t://a", "A", metadata_hash="h1"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    items = sum(pool.stats.batch_sizes["text"])
    await js.publish(subjects.TRACK_UPDATED, track_event("t://a", "A again", metadata_hash="h1"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    assert sum(pool.stats.batch_sizes["text"]) == items
    assert await stored_names(worker) == {"t://a": "A"}
    await js.publish(subjects.TRACK_UPDATED, track_event("t://a", "A new", metadata_hash="h2"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    assert await stored_names(worker) == {"t://a": "A new"}


async def test_poison_messages_are_dead_lettered_with_reasons(bus: NATS, worker: Worker) -> None:
    js = bus.jetstream()
    bad = {
        "not msgpack": b"\xc1\xc1\xc1",
        "a list": msgpack.packb([1, 2]),
        "no track id": msgpack.packb({"event": "media_item_added", "data": {"name": "x"}}),
        "no name": msgpack.packb({"object_id": "t://x", "data": {"artists": ["a"]}}),
        "bad artists": msgpack.packb({"object_id": "t://y", "data": {"name": "y", "artists": 5}}),
    }
    for body in bad.values():
        await js.publish(subjects.TRACK_ADDED, body)
    await js.publish(
        subjects.PLAYED, msgpack.packb({"object_id": "t://z", "data": {"duration": "long"}})
    )
    await js.publish(subjects.TRACK_ADDED, track_event("t://ok", "Fine"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    await drained(js, subjects.playback_consumer(worker.app.instance_id))
    assert await stored_names(worker) == {"t://ok": "Fine"}
    dlq = await js.pull_subscribe(subjects.DLQ_ALL, durable="test-dlq", stream=subjects.DLQ_STREAM)
    msgs = await dlq.fetch(10, timeout=2)
    assert len(msgs) == len(bad) + 1
    assert all(m.headers for m in msgs)
    reasons = [m.headers["Insight-Dlq-Reason"] for m in msgs]  # type: ignore[index]
    assert all(reasons)
    assert any("deserialize" in r for r in reasons)
    assert any("track id" in r for r in reasons)
    origin = {id(m): m.headers["Insight-Original-Subject"] for m in msgs}  # type: ignore[index]
    library = [m for m in msgs if origin[id(m)] == subjects.TRACK_ADDED]
    assert sorted(m.data for m in library) == sorted(bad.values())  # byte for byte
    assert all(m.subject == "insight.dlq.events.library.track.added" for m in library)


async def test_duplicate_msg_ids_are_dropped(bus: NATS, worker: Worker) -> None:
    js = bus.jetstream()
    first = await js.publish(
        subjects.TRACK_ADDED, track_event("t://d", "D"), headers={"Nats-Msg-Id": "added-d"}
    )
    second = await js.publish(
        subjects.TRACK_ADDED, track_event("t://d", "D changed"), headers={"Nats-Msg-Id": "added-d"}
    )
    assert not first.duplicate and second.duplicate
    await drained(js, subjects.LIBRARY_CONSUMER)
    assert await stored_names(worker) == {"t://d": "D"}


async def test_two_workers_share_events_each_processed_once(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    # two private stores on purpose, to see how the consumers split the events: the store
    # lease, which refuses that outside tests, is off here (tests/test_store_lease.py)
    off = {"lease_ttl_s": 0}
    a = await in_process_worker(nats_server.url, tmp_path / "a", tiny_model_dir, storage=off)
    b = await in_process_worker(nats_server.url, tmp_path / "b", tiny_model_dir, storage=off)
    try:
        js = bus.jetstream()
        for i in range(300):
            await js.publish(subjects.TRACK_ADDED, track_event(f"t://{i}", f"Song {i}"))
        await drained(js, subjects.LIBRARY_CONSUMER)
        in_a, in_b = await stored_names(a), await stored_names(b)
        assert in_a and in_b, "both workers took part"
        assert not in_a.keys() & in_b.keys(), "no event processed twice"
        assert len(in_a) + len(in_b) == 300
        # playback history lives per data dir: both workers record every play
        for i in range(20):
            played = {
                "object_id": f"t://{i}",
                "data": {
                    "duration": 100,
                    "seconds_played": 100,
                    "fully_played": True,
                    "is_playing": False,
                    "userid": "bob",
                    "timestamp": 1_700_000_000 + i,
                },
            }
            await js.publish(subjects.PLAYED, msgpack.packb(played))
        for w in (a, b):
            await drained(js, subjects.playback_consumer(w.app.instance_id))
            plays = await w.app.services.history.tracks("bob")
            assert sorted(h.track_id for h in plays) == sorted(f"t://{i}" for i in range(20))
    finally:
        await a.stop()
        await b.stop()


async def test_thousand_events_survive_two_worker_crashes(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """1 000 events (duplicates, updates, deletes, 5 malformed); the worker is SIGKILLed twice."""
    rng = random.Random(7)
    js = bus.jetstream()
    data_dir = tmp_path / "worker"
    expected: dict[str, str] = {}
    events: list[tuple[str, bytes, str | None]] = []
    for i in range(1000):
        roll = rng.random()
        uri = f"library://track/{rng.randrange(400)}"
        if i % 200 == 13:
            events.append((subjects.TRACK_ADDED, b"\x93\x01", None))
        elif roll < 0.15 and expected:
            uri = rng.choice(sorted(expected))
            events.append((subjects.TRACK_DELETED, track_event(uri, "", kind="deleted"), None))
            expected.pop(uri)
        else:
            name = f"name-{i}"
            subject = subjects.TRACK_UPDATED if uri in expected else subjects.TRACK_ADDED
            events.append((subject, track_event(uri, name), f"ev-{i}"))
            expected[uri] = name
            if roll > 0.9:  # a publisher retry: same Msg-Id, must be dropped
                events.append((subject, track_event(uri, name + "-dup"), f"ev-{i}"))

    proc = WorkerProcess(nats_server.url, data_dir, tiny_model_dir).start()
    await proc.ready(bus)
    publisher = asyncio.create_task(publish_all(bus, events))
    for _ in range(2):
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        proc.kill()
        proc = WorkerProcess(nats_server.url, data_dir, tiny_model_dir).start()
        await proc.ready(bus)
    await publisher
    await drained(js, subjects.LIBRARY_CONSUMER, timeout=120)
    proc.stop()

    store = await open_store(StorageSettings(data_dir=data_dir), dim=512)
    try:
        names, offset = {}, None
        while True:
            points, offset = await store.scroll(TRACKS_TEXT, offset=offset, limit=500)
            names.update({p.key: p.payload["name"] for p in points})
            if offset is None:
                break
        assert names == expected
        assert await store.count(TRACKS_TEXT) == len(expected)  # no point twice
    finally:
        await store.close()
    info = await js.stream_info(subjects.DLQ_STREAM)
    assert info.state.messages == 5


async def publish_all(nc: NATS, events: list[tuple[str, bytes, str | None]]) -> None:
    js = nc.jetstream()
    for subject, body, msg_id in events:
        await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
        await asyncio.sleep(0.002)


async def test_sync_completed_asks_for_a_backfill(bus: NATS, worker: Worker) -> None:
    js = bus.jetstream()
    await js.publish(subjects.TRACK_ADDED, track_event("t://b1", "B1"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    sub = await bus.subscribe(subjects.BACKFILL_NEEDED)
    await flush_subscriptions(bus)
    await js.publish(subjects.SYNC_COMPLETED, msgpack.packb({"event": "music_sync_completed"}))
    note = msgpack.unpackb((await sub.next_msg(timeout=10)).data)
    assert note["collections"]["tracks_text"] == 1 and note["timestamp"] > 0
