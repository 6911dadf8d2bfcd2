"""Events as Music Assistant's real streams need them: JSON or msgpack by Content-Type, ids
within the API's limit, MA's track fields and the watched file of the same recording, playback
delivered in order, and a backfill's end that waits for what a crash left unacknowledged."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import pytest
from nats.aio.client import Client as NATS
from pydantic import TypeAdapter, ValidationError

from insight.bus import subjects
from insight.bus.embedded import EmbeddedNats
from insight.ingest.events import consumer_config
from insight.limits import MAX_ID_CHARS
from insight.runtime import Worker
from insight.schemas import IngestMetadata, TrackId
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.storage.where import where
from tests.busutil import drained, in_process_worker, stored_names, track_event


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
    history = worker.app.services.history
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
    library, store = worker.app.services.library, worker.app.require_store()
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
    flt = where(min_bpm=120, keys=["a MINOR"])
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
