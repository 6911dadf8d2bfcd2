"""Staged model switch: the old model and space serve until the new space is filled.

Two real tiny models of different dimensions (512 and 256), a real watcher over encoded audio
files, a real bus for library events, the file store, over HTTP.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from insight.bus import subjects
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.spaces import space_key
from insight.testing.tiny_clap import build_tiny_clap
from tests.audio_files import tagged, write_track
from tests.busutil import drained, track_event
from tests.conftest import Running, make_settings, start_running, stop_running
from tests.fake_hub import FakeHub, hub_layout

MODEL_B = "test-org/tiny-256"
KEY_B = space_key(MODEL_B, 256)


@pytest.fixture(scope="module")
def model_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-256"), dim=256, seed=3)


@pytest_asyncio.fixture
async def hub(model_b_dir: Path) -> AsyncIterator[FakeHub]:
    h = await FakeHub(repos={MODEL_B: hub_layout(model_b_dir)}).start()
    yield h
    await h.stop()


def settings_for(tmp_path: Path, tiny_model_dir: Path, hub: FakeHub) -> Any:
    music = tmp_path / "music"
    if not music.exists():
        write_track(music / "a.flac", tags=tagged("Alpha", "A", "AA", "Rock"), freq=300)
        write_track(music / "b.flac", tags=tagged("Beta", "B", "BB", "Jazz"), freq=600)
    return make_settings(
        tmp_path / "data",
        tiny_model_dir,
        model={"hub_endpoint": hub.url},
        watcher={"folders": [str(music)], "debounce_s": 0.2, "scan_interval_s": 0},
    )


async def filled(r: Running) -> None:
    """Three tracks from MA, two files analysed, model B in the hub cache."""
    for i in range(3):
        status, _ = await r.api.call(
            "POST",
            "/tracks/embed-text",
            {"track_id": f"ma-{i}", "metadata": {"name": f"Song {i}", "artists": ["X"]}},
        )
        assert status == 200
    watcher = r.app.services.watcher
    await watcher.start()
    await watcher.wait_idle(60)
    assert await r.app.store.count(TRACKS_AUDIO) == 2
    status, body = await r.api.call("POST", "/models/download", {"model_id": MODEL_B})
    assert status == 200, body
    for _ in range(400):
        if r.app.services.models.model_dir(MODEL_B) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("model B was not downloaded")


async def answers(r: Running) -> list[Any]:
    """What a text search and an audio search answer (ids and scores)."""
    out = []
    _, found = await r.api.call("POST", "/tracks/search-text", {"query": "Song 1", "limit": 10})
    out.append([(h["track_id"], h["score"]) for h in found["results"]])
    points, _ = await r.app.store.scroll(TRACKS_AUDIO, None, 10, True)
    probe = sorted(points, key=lambda p: p.key)[0]
    _, found = await r.api.call(
        "POST", "/tracks/search", {"embedding": probe.vector.tolist(), "collection": "audio"}
    )
    out.append([(h["track_id"], h["score"]) for h in found["results"]])
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    """The same tracks in the same order with the same scores (to float noise)."""
    return all(
        [t for t, _ in x] == [t for t, _ in y]
        and np.allclose([s for _, s in x], [s for _, s in y], atol=1e-5)
        for x, y in zip(a, b, strict=True)
    )


async def stored(store: Any, key: str) -> list[Any]:
    """The text point ``key`` once it is there (the consumer's counters lag a publish)."""
    for _ in range(600):
        got = await store.get(TRACKS_TEXT, [key], with_vectors=True)
        if got:
            return list(got)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never stored")


async def migration(r: Running) -> dict[str, Any]:
    status, body = await r.api.call("GET", "/models/migration")
    assert status == 200, body
    return dict(body)


async def until(r: Running, phase: str, within_s: float = 60.0) -> dict[str, Any]:
    for _ in range(int(within_s / 0.05)):
        body = await migration(r)
        if body["phase"] == phase:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"migration never reached {phase}: {body}")


@asynccontextmanager
async def filled_app(tmp_path: Path, tiny_model_dir: Path, hub: FakeHub) -> AsyncIterator[Running]:
    """An app on the tiny model with :func:`filled`'s library, stopped on exit."""
    r = await start_running(settings_for(tmp_path, tiny_model_dir, hub))
    try:
        await filled(r)
        yield r
    finally:
        await stop_running(r)


async def staged(r: Running) -> tuple[dict[str, Any], dict[str, Any]]:
    """A migration to model B held in its audio phase (the watcher is paused): what the load
    answered and the migration's state then."""
    r.app.services.watcher.pause()
    status, body = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
    assert status == 200, body
    return dict(body), await until(r, "audio")


async def test_old_space_serves_until_the_new_one_is_filled(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        old_store = r.app.store
        # an MA track carrying a watched file's audio vector (ingest/links.py)
        files, _ = await old_store.scroll(TRACKS_AUDIO, None, 10, True)
        file = sorted(files, key=lambda p: p.key)[0]
        payload = {"track_id": "ma-linked", "name": "L", "linked_from": file.key}
        payload["model_id"] = "insight/tiny-clap"
        await old_store.upsert(TRACKS_AUDIO, [Point("ma-linked", file.vector, payload)])
        before = await answers(r)
        body, state = await staged(r)  # the paused watcher holds the audio phase
        assert body["migration"]["space"] == KEY_B and body["migration"]["from_space"] == "default"
        assert "both models are in memory" in body["message"]
        assert (state["text_total"], state["text_done"]) == (5, 5)
        assert (state["audio_total"], state["audio_done"]) == (3, 0)
        _, system = await r.api.call("GET", "/status")
        assert (
            system["migration"]["phase"] == "audio" and system["migration"]["model_id"] == MODEL_B
        )

        # every query still answers from the old space with the old model's vectors
        assert same(await answers(r), before)
        assert r.app.store is old_store and r.app.pool.model.model_id == "insight/tiny-clap"
        _, emb = await r.api.call("POST", "/embed/text", {"text": "calm piano"})
        assert len(emb["embedding"]) == 512

        # an event mid-migration lands in both spaces, each with its own model's vector
        js = r.stack.bridge.nc.jetstream()
        await js.publish(subjects.TRACK_ADDED, track_event("library://track/9", "Nine"))
        await drained(js, subjects.LIBRARY_CONSUMER)
        target = r.app.services.models.migrations.last.stores.store
        (old,) = await stored(old_store, "library://track/9")
        (new,) = await stored(target, "library://track/9")
        assert old.payload["model_id"] == "insight/tiny-clap" and old.vector.shape == (512,)
        assert new.payload["model_id"] == MODEL_B and new.vector.shape == (256,)
        # a streamed audio vector cannot be made again: reported, kept in the old space
        status, _ = await r.api.call(
            "POST",
            "/tracks/upsert",
            {"track_id": "streamed", "metadata": {"name": "S"}, "audio_embedding": [1.0] * 512},
        )
        assert status == 200
        state = await migration(r)
        assert state["unrecoverable_ids"] == ["streamed"]

        # a file scanned mid-migration: analysed into the old space, then queued for the new
        late = write_track(tmp_path / "music" / "c.flac", tags=tagged("Gamma", "C", "CC", "Pop"))
        r.app.services.watcher.scan()
        r.app.services.watcher.resume()
        done = await until(r, "done")
        assert (done["audio_total"], done["audio_done"], done["unrecoverable"]) == (5, 4, 1)
        row = r.app.services.watcher.state.get(str(late))
        assert row is not None and row.track_id
        (was,) = await old_store.get(TRACKS_AUDIO, [row.track_id], with_vectors=True)
        (now,) = await r.app.store.get(TRACKS_AUDIO, [row.track_id], with_vectors=True)
        assert was.vector.shape == (512,) and now.vector.shape == (256,)
        assert r.app.pool.model.model_id == MODEL_B and r.app.store.dim == 256
        assert r.app.services.models.migrations.last.loaded.pool is r.app.pool  # old released
        texts = await r.app.store.get(TRACKS_TEXT, ["ma-1", "library://track/9", row.track_id])
        assert {p.payload["model_id"] for p in texts} == {MODEL_B} and len(texts) == 3
        audio, _ = await r.app.store.scroll(TRACKS_AUDIO, None, 10, True)
        assert len(audio) == 4 and {p.vector.shape for p in audio} == {(256,)}
        new_vectors = {p.key: p.vector for p in audio}
        assert np.array_equal(new_vectors["ma-linked"], new_vectors[file.key])  # linked again
        _, found = await r.api.call("POST", "/tracks/search-text", {"query": "Song 1"})
        assert {"ma-0", "ma-1", "ma-2"} <= {h["track_id"] for h in found["results"]}
        assert not same([[(h["track_id"], h["score"]) for h in found["results"]]], before[:1])
        _, spaces = await r.api.call("GET", "/storage/spaces")
        listed = {s["space"]: s for s in spaces["spaces"]}
        assert listed[KEY_B]["current"] and not listed["default"]["current"]
        assert not any(s["migrating"] for s in spaces["spaces"])
        assert listed["default"]["counts"][TRACKS_AUDIO] == 5  # 3 files, linked, streamed
        assert not (tmp_path / "data" / "migration.json").exists()
        assert (await r.api.call("GET", "/status"))[1]["migration"] is None
        status, dropped = await r.api.call("DELETE", "/storage/spaces/default")
        assert status == 200 and dropped["dim"] == 512


async def test_cancel_leaves_the_old_model_serving(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        before = await answers(r)
        body, _ = await staged(r)
        assert body["migration"]["phase"] in ("text", "audio")
        status, err = await r.api.call("DELETE", f"/storage/spaces/{KEY_B}")
        assert status == 409 and "migration" in err["error"]["message"]
        _, spaces = await r.api.call("GET", "/storage/spaces")
        assert [s["space"] for s in spaces["spaces"] if s["migrating"]] == [KEY_B]
        status, err = await r.api.call("DELETE", f"/models/{MODEL_B}")  # its files are in use
        assert status == 409 and "migration" in err["error"]["message"]
        status, body = await r.api.call("DELETE", "/models/migration")
        assert status == 200 and body["phase"] == "cancelled"
        r.app.services.watcher.resume()
        await r.app.services.watcher.wait_idle(60)
        assert r.app.pool.model.model_id == "insight/tiny-clap"
        assert same(await answers(r), before)
        assert r.app.services.library.mirror is None
        assert not (tmp_path / "data" / "migration.json").exists()
        status, _ = await r.api.call("DELETE", "/models/migration")
        assert status == 404
        _, spaces = await r.api.call("GET", "/storage/spaces")
        listed = {s["space"]: s for s in spaces["spaces"]}
        assert listed["default"]["current"] and listed[KEY_B]["counts"][TRACKS_TEXT] == 5
        assert listed[KEY_B]["counts"][TRACKS_AUDIO] == 0  # queued files were not analysed

        # the explicit immediate switch (`insight models load --now`): at once, into the space
        # the cancel left
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "insight.cli",
            "models",
            "load",
            MODEL_B,
            "--now",
            "--url",
            r.api.base,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0 and b"2 stored vectors were made by another model" in out
        assert r.app.pool.model.model_id == MODEL_B and r.app.store.dim == 256
        assert r.app.services.models.migrations.running is None


async def test_a_restart_mid_migration_begins_it_again(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    settings = settings_for(tmp_path, tiny_model_dir, hub)
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        before = await answers(r)
        await staged(r)
        assert same(await answers(r), before)
    assert (tmp_path / "data" / "migration.json").exists()

    r = await start_running(settings)  # the old model loads, the migration begins again
    try:
        # never "no migration" while the next model loads again: "resuming" until it runs
        first = await migration(r)
        assert first["model_id"] == MODEL_B and first["space"] == KEY_B
        assert first["phase"] in ("resuming", "text", "audio", "switching", "done")
        done = await until(r, "done")
        assert done["text_done"] == 5 and done["audio_done"] == 2
        assert r.app.pool.model.model_id == MODEL_B
        _, spaces = await r.api.call("GET", "/storage/spaces")
        counts = {s["space"]: s["counts"] for s in spaces["spaces"]}
        assert counts["default"][TRACKS_TEXT] == 5 and counts["default"][TRACKS_AUDIO] == 2
        assert counts[KEY_B][TRACKS_TEXT] == 5 and counts[KEY_B][TRACKS_AUDIO] == 2
        vec = np.asarray((await r.api.call("POST", "/embed/text", {"text": "x"}))[1]["embedding"])
        assert vec.shape == (256,)
        assert not (tmp_path / "data" / "migration.json").exists()
    finally:
        await stop_running(r)


async def test_a_restart_on_the_target_model_ends_the_migration(
    tmp_path: Path, tiny_model_dir: Path, model_b_dir: Path, hub: FakeHub
) -> None:
    """Restarted with the migration's model configured: it serves its space as far as it got,
    nothing resumes, and the old space is kept."""
    settings = settings_for(tmp_path, tiny_model_dir, hub)
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        await staged(r)

    on_b = settings.model_copy(
        update={"model": settings.model.model_copy(update={"path": model_b_dir, "name": MODEL_B})}
    )
    r = await start_running(on_b)
    try:
        assert r.app.pool.model.model_id == MODEL_B
        for _ in range(200):  # the resume task runs in the background
            if not (tmp_path / "data" / "migration.json").exists():
                break
            await asyncio.sleep(0.05)
        assert not (tmp_path / "data" / "migration.json").exists()
        status, _ = await r.api.call("GET", "/models/migration")
        assert status == 404
        _, spaces = await r.api.call("GET", "/storage/spaces")
        listed = {s["space"]: s for s in spaces["spaces"]}
        assert listed[KEY_B]["current"] and listed[KEY_B]["counts"][TRACKS_TEXT] == 5
        assert listed["default"]["counts"][TRACKS_TEXT] == 5
        assert listed["default"]["counts"][TRACKS_AUDIO] == 2
    finally:
        await stop_running(r)
