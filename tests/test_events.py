"""Library and playback events on JetStream: idempotent, ordered, dead-lettered, crash-safe."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import nats
import numpy as np
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from pydantic import TypeAdapter, ValidationError

from insight.bus import subjects
from insight.bus.connection import flush_subscriptions
from insight.bus.embedded import EmbeddedNats
from insight.bus.streams import ensure_streams
from insight.config import StorageSettings
from insight.ingest.events import consumer_config
from insight.ingest.parse import MAX_ID_CHARS
from insight.runtime import Worker
from insight.schemas import IngestMetadata, SearchFilter, TrackId
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.storage.factory import open_store
from tests.busutil import WorkerProcess, drained, in_process_worker, track_event


@pytest_asyncio.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.close()


@pytest_asyncio.fixture
async def worker(
    nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> AsyncIterator[Worker]:
    w = await in_process_worker(nats_server.url, tmp_path / "w", tiny_model_dir)
    yield w
    await w.stop()


async def stored_names(w: Worker) -> dict[str, str]:
    store = w.app.require_store()
    out, offset = {}, None
    while True:
        points, offset = await store.scroll(TRACKS_TEXT, offset=offset, limit=500)
        out.update({p.key: p.payload["name"] for p in points})
        if offset is None:
            return out


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
    history = {h.track_id: h for h in await worker.app.services["history"].tracks("alice")}
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
    a = await in_process_worker(nats_server.url, tmp_path / "a", tiny_model_dir)
    b = await in_process_worker(nats_server.url, tmp_path / "b", tiny_model_dir)
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
            plays = await w.app.services["history"].tracks("bob")
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


async def test_json_and_msgpack_events_by_content_type(bus: NATS, worker: Worker) -> None:
    """Events follow the codec rules of requests: msgpack by default, JSON when the
    Content-Type says so; another content type, or an id over the API's limit, is
    dead-lettered with its reason."""
    js = bus.jetstream()
    as_json = {"Content-Type": "application/json"}
    body = msgpack.unpackb(track_event("library://track/j", "Jay"))
    await js.publish(subjects.TRACK_ADDED, json.dumps(body).encode(), headers=as_json)
    await js.publish(
        subjects.TRACK_ADDED,
        track_event("library://track/m", "Em"),
        headers={"Content-Type": "application/msgpack"},
    )
    report = {
        "event": "media_item_played",
        "object_id": "library://track/j",
        "data": {
            "uri": "library://track/j",
            "duration": 200,
            "seconds_played": 198,
            "fully_played": True,
            "is_playing": False,
            "userid": "jo",
        },
        "timestamp": 1_700_000_000,
    }
    await js.publish(subjects.PLAYED, json.dumps(report).encode(), headers=as_json)
    fav = {"user_id": "jo", "track_id": "library://track/m", "timestamp": 1_700_000_001}
    await js.publish(subjects.FAVORITE, json.dumps(fav).encode(), headers=as_json)
    bad = {
        "text/plain": (json.dumps(body).encode(), {"Content-Type": "text/plain"}),
        "json said, msgpack sent": (track_event("library://track/x", "X"), as_json),
        "id too long": (track_event("library://track/" + "9" * 4096, "Long"), {}),
    }
    for payload, headers in bad.values():
        await js.publish(subjects.TRACK_ADDED, payload, headers=headers or None)
    await drained(js, subjects.LIBRARY_CONSUMER)
    await drained(js, subjects.playback_consumer(worker.app.instance_id))

    assert await stored_names(worker) == {"library://track/j": "Jay", "library://track/m": "Em"}
    history = worker.app.services["history"]
    [play] = await history.plays("jo")
    assert (play.track_id, play.seconds_played, play.fully_played) == (
        "library://track/j",
        198.0,
        True,
    )
    assert play.ts == 1_700_000_000 - 198  # the listen started when it was 198 s shorter
    assert await history.favorite_ids("jo") == ["library://track/m"]
    dlq = await js.pull_subscribe(subjects.DLQ_ALL, durable="test-dlq2", stream=subjects.DLQ_STREAM)
    msgs = await dlq.fetch(10, timeout=2)
    reasons = sorted(m.headers["Insight-Dlq-Reason"] for m in msgs)  # type: ignore[index]
    assert len(reasons) == len(bad)
    assert any("unsupported Content-Type 'text/plain'" in r for r in reasons)
    assert any("Failed to deserialize json" in r for r in reasons)
    assert any("4112 characters long; the limit is 4096" in r for r in reasons)
    api_ids = TypeAdapter(TrackId)  # one limit for the API and for events
    api_ids.validate_python("x" * MAX_ID_CHARS)
    with pytest.raises(ValidationError):
        api_ids.validate_python("x" * (MAX_ID_CHARS + 1))


async def test_ma_track_fields_and_the_watched_file_of_the_same_recording(
    bus: NATS, worker: Worker
) -> None:
    """version is in the text, album year / external ids / bpm / key on the payload (bpm and
    key filterable), and a watched file with the track's MusicBrainz recording id lends the
    MA track its audio vector."""
    library, store = worker.app.services["library"], worker.app.require_store()
    heard = np.zeros(512, dtype=np.float32)
    heard[3] = 1.0
    await library.ingest_analysis(
        "mb:0a1b-rec", IngestMetadata(name="Song"), heard, source="watcher", file_path="/m/s.flac"
    )
    js = bus.jetstream()
    live = track_event(
        "library://track/live",
        "Song",
        version="Live",
        external_ids=[["musicbrainz_recordingid", "0A1B-rec"], ["isrc", "US1234"]],
        album={"name": "Album", "year": 1977},
        audio_metadata={"bpm": 128.0, "musical_key": "A minor"},
    )
    studio = track_event("library://track/studio", "Song", version="")
    await js.publish(subjects.TRACK_ADDED, live)
    await js.publish(subjects.TRACK_ADDED, studio)
    await drained(js, subjects.LIBRARY_CONSUMER)

    got = {
        p.key: p
        for p in await store.get(
            TRACKS_TEXT, ["library://track/live", "library://track/studio"], with_vectors=True
        )
    }
    p = got["library://track/live"].payload
    assert (p["version"], p["year"], p["mbid"], p["bpm"], p["key"]) == (
        "Live",
        1977,
        "0a1b-rec",
        128.0,
        "A minor",
    )
    assert p["external_ids"] == {"musicbrainz_recordingid": "0A1B-rec", "isrc": "US1234"}
    assert "version" not in got["library://track/studio"].payload
    a, b = (got[k].vector for k in ("library://track/live", "library://track/studio"))
    assert a is not None and b is not None and float(np.dot(a, b)) < 0.9999  # another text
    [linked] = await store.get(TRACKS_AUDIO, ["library://track/live"], with_vectors=True)
    assert linked.vector is not None and np.allclose(linked.vector, heard)
    assert linked.payload["linked_from"] == "mb:0a1b-rec"
    assert linked.payload["file_path"] == "/m/s.flac" and linked.payload["bpm"] == 128.0
    assert not await store.exists(TRACKS_AUDIO, "library://track/studio")
    flt = SearchFilter(min_bpm=120, keys=["a MINOR"])
    hits = await store.search(TRACKS_TEXT, b, 10, flt)
    assert [h.key for h in hits] == ["library://track/live"]


async def test_playback_is_delivered_one_at_a_time_also_for_an_older_consumer(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Listens fold reports in order: a crash's redelivery must come before anything newer,
    so the playback consumer has one message in flight, even one an older version created."""
    js = bus.jetstream()
    data_dir = tmp_path / "older"
    data_dir.mkdir()
    (data_dir / "instance-id").write_text("olderdir0001")
    name = subjects.playback_consumer("olderdir0001")
    await js.add_consumer(
        subjects.EVENTS_STREAM, consumer_config(name, subjects.PLAYBACK_EVENTS, 30 * 86400.0)
    )
    assert (await js.consumer_info(subjects.EVENTS_STREAM, name)).config.max_ack_pending == 256
    w = await in_process_worker(nats_server.url, data_dir, tiny_model_dir)
    try:
        info = await js.consumer_info(subjects.EVENTS_STREAM, name)
        assert info.config.max_ack_pending == 1
        library = await js.consumer_info(subjects.EVENTS_STREAM, subjects.LIBRARY_CONSUMER)
        assert library.config.max_ack_pending == 256  # the version guard orders library events
    finally:
        await w.stop()


async def test_backfill_end_waits_for_listings_a_crash_left_unacknowledged(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A worker died holding a backfill's tracks unacknowledged: they come back after the ack
    wait, later than the backfill's end marker. The end waits for them (no listed track is
    deleted), then deletes the one MA no longer has."""
    js = bus.jetstream()
    data_dir = tmp_path / "w"
    first = await in_process_worker(nats_server.url, data_dir, tiny_model_dir)
    await js.publish(subjects.TRACK_ADDED, track_event("library://track/gone", "Gone"))
    await js.publish(subjects.TRACK_ADDED, track_event("library://track/kept", "Kept"))
    await drained(js, subjects.LIBRARY_CONSUMER)
    await first.stop()

    await js.publish(subjects.BACKFILL_STARTED, msgpack.packb({"backfill_id": "b1"}))
    for uri, name in (("library://track/kept", "Kept"), ("library://track/new", "New")):
        body = msgpack.unpackb(track_event(uri, name, kind="updated"))
        await js.publish(subjects.TRACK_UPDATED, msgpack.packb({**body, "backfill": "b1"}))
    await js.publish(subjects.BACKFILL_COMPLETED, msgpack.packb({"backfill_id": "b1", "tracks": 2}))
    crashed = await js.pull_subscribe(
        subjects.LIBRARY_EVENTS, durable=subjects.LIBRARY_CONSUMER, stream=subjects.EVENTS_STREAM
    )
    held = await crashed.fetch(3, timeout=5)  # the start and both tracks, never acknowledged
    assert [m.subject for m in held] == [subjects.BACKFILL_STARTED] + [subjects.TRACK_UPDATED] * 2
    await crashed.unsubscribe()

    second = await in_process_worker(nats_server.url, data_dir, tiny_model_dir)
    try:
        await drained(js, subjects.LIBRARY_CONSUMER, timeout=90)
        assert await stored_names(second) == {
            "library://track/kept": "Kept",
            "library://track/new": "New",
        }
    finally:
        await second.stop()
    assert (await js.stream_info(subjects.DLQ_STREAM)).state.messages == 0
