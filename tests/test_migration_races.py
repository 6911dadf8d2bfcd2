"""Writes racing a model migration: what the next space ends with equals the serving space.

Real parts as in test_migration.py: two tiny models, a real watcher, HTTP; ``Migrations.step``
runs a write between a batch's read of the serving space and its upsert into the next one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from tests import test_migration
from tests.conftest import start_running, stop_running
from tests.fake_hub import FakeHub
from tests.test_migration import KEY_B, MODEL_B, filled_app, settings_for, staged, until

model_b_dir = test_migration.model_b_dir  # the same fixtures
hub = test_migration.hub


async def test_tracks_deleted_or_updated_mid_batch_are_not_made_from_old_metadata(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        seen: list[list[str]] = []

        async def step(keys: list[str]) -> None:
            seen.append(keys)
            if len(seen) > 1:
                return
            await r.app.services.library.delete_track("ma-0")
            status, _ = await r.api.call(
                "POST",
                "/tracks/embed-text",
                {"track_id": "ma-1", "metadata": {"name": "Renamed", "artists": ["Y"]}},
            )
            assert status == 200

        r.app.services.models.migrations.step = step
        status, body = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status == 200, body
        await until(r, "done")
        assert {"ma-0", "ma-1"} <= set(seen[0])  # the write came after the batch was read
        assert r.app.pool.model.model_id == MODEL_B
        texts = {p.key: p for p in await r.app.store.get(TRACKS_TEXT, ["ma-0", "ma-1", "ma-2"])}
        assert sorted(texts) == ["ma-1", "ma-2"]  # deleted stays deleted
        assert texts["ma-1"].payload["name"] == "Renamed"
        assert texts["ma-1"].payload["artists"] == ["Y"]
        assert {p.payload["model_id"] for p in texts.values()} == {MODEL_B}


async def test_a_migration_after_a_cancelled_one_analyses_every_file(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """The cancelled migration's queued files are withdrawn: the next one queues its own."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        watcher = r.app.services.watcher
        first = (await staged(r))[1]["started_at"]
        status, body = await r.api.call("DELETE", "/models/migration")
        assert status == 200 and body["phase"] == "cancelled"
        assert not any(j.into is not None for j in list(watcher.queue._queue))  # type: ignore[attr-defined]
        status, body = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status == 200, body
        state = await until(r, "audio")
        assert state["audio_total"] == 2 and state["unrecoverable"] == 0
        watcher.resume()
        done = await until(r, "done")
        assert done["started_at"] >= first
        assert (done["audio_done"], done["unrecoverable"]) == (2, 0)
        assert r.app.pool.model.model_id == MODEL_B
        audio, _ = await r.app.store.scroll(TRACKS_AUDIO, None, 10, True)
        assert len(audio) == 2 and {p.vector.shape for p in audio} == {(256,)}


async def test_a_watcher_stop_mid_migration_keeps_its_files(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """``POST /watcher/stop`` drops scanned files, not the ones a migration waits for."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        watcher = r.app.services.watcher
        await staged(r)
        queued = [j for j in list(watcher.queue._queue) if j.into is not None]  # type: ignore[attr-defined]
        assert queued  # one file in a paused worker's hand, the other queued
        status, _ = await r.api.call("POST", "/watcher/stop", {})
        assert status == 200
        watcher.resume()
        done = await until(r, "done")
        assert (done["audio_done"], done["unrecoverable"]) == (2, 0)
        audio, _ = await r.app.store.scroll(TRACKS_AUDIO, None, 10, True)
        assert len(audio) == 2 and {p.vector.shape for p in audio} == {(256,)}


async def test_resume_never_starts_a_second_migration(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        await staged(r)
        migrations = r.app.services.models.migrations
        first = migrations.last
        assert (tmp_path / "data" / "migration.json").exists()
        assert await r.app.services.models.resume_migration() is None
        assert migrations.last is first and first.phase == "audio"
        r.app.services.watcher.resume()
        assert (await until(r, "done"))["audio_done"] == 2


async def test_a_migration_from_another_model_is_not_resumed(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """``migration.json`` written while another model served: cleared, nothing starts."""
    settings = settings_for(tmp_path, tiny_model_dir, hub)
    async with filled_app(tmp_path, tiny_model_dir, hub):
        pass
    saved = tmp_path / "data" / "migration.json"
    body = {"model_id": MODEL_B, "space": "x", "from_model_id": "test-org/other"}
    saved.write_text(json.dumps(body))
    r = await start_running(settings)
    try:
        for _ in range(200):  # the resume task runs in the background
            if not saved.exists():
                break
            await asyncio.sleep(0.05)
        assert not saved.exists()
        status, _ = await r.api.call("GET", "/models/migration")
        assert status == 404
        assert r.app.pool.model.model_id == "insight/tiny-clap"
        assert r.app.services.library.mirror is None
    finally:
        await stop_running(r)


async def test_a_failed_mirror_write_is_made_before_the_switch(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        await staged(r)
        m = r.app.services.models.migrations.last
        pool, m.loaded.pool = m.loaded.pool, None  # the next model cannot embed for a while
        status, _ = await r.api.call(
            "POST",
            "/tracks/embed-text",
            {"track_id": "ma-7", "metadata": {"name": "Seven", "artists": ["Z"]}},
        )
        assert status == 200
        assert m.failed == {"ma-7"}
        assert not await m.stores.require_store().get(TRACKS_TEXT, ["ma-7"])
        m.loaded.pool = pool
        r.app.services.watcher.resume()
        await until(r, "done")
        (seven,) = await r.app.store.get(TRACKS_TEXT, ["ma-7"], with_vectors=True)
        assert seven.payload["model_id"] == MODEL_B and seven.vector.shape == (256,)
        assert seven.payload["name"] == "Seven"


async def test_a_cancel_mid_batch_lets_the_batch_finish(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """The cancel sets the stop flag and waits: the batch being written ends whole."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        cancels: list[asyncio.Task[Any]] = []

        async def step(keys: list[str]) -> None:
            if not cancels:
                cancels.append(asyncio.create_task(r.api.call("DELETE", "/models/migration")))
                await asyncio.sleep(0.3)  # the cancel is waiting for this batch now
                assert not cancels[0].done()

        migrations = r.app.services.models.migrations
        migrations.step = step
        status, _ = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status == 200
        for _ in range(200):  # the migration task reaches its first batch
            if cancels:
                break
            await asyncio.sleep(0.05)
        status, body = await asyncio.wait_for(cancels[0], 30)
        assert status == 200 and body["phase"] == "cancelled"
        assert migrations.last.task.done()
        target = migrations.last.stores.require_store()
        assert await target.count(TRACKS_TEXT) == 5  # the batch in hand was written whole
        assert r.app.pool.model.model_id == "insight/tiny-clap"


async def test_an_unrecoverable_track_is_listed_once(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """A stream vector written in the text phase is lost once, not again by the audio phase."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:

        async def step(keys: list[str]) -> None:
            body = {"track_id": "streamed", "metadata": {"name": "S"}}
            status, _ = await r.api.call(
                "POST", "/tracks/upsert", body | {"audio_embedding": [1.0] * 512}
            )
            assert status == 200

        r.app.services.models.migrations.step = step
        status, _ = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status == 200
        done = await until(r, "done")
        assert done["unrecoverable_ids"] == ["streamed"] and done["unrecoverable"] == 1
        assert (done["audio_total"], done["audio_done"]) == (3, 2)


async def test_a_migration_that_cannot_begin_leaves_nothing_staged(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """``migration.json`` cannot be written (a directory there): the load fails, no space is
    marked as filling and the next space can be dropped."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        (tmp_path / "data" / "migration.json").mkdir()
        status, _ = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status >= 500
        assert r.app.services.library.mirror is None
        assert r.app.pool.model.model_id == "insight/tiny-clap"
        _, spaces = await r.api.call("GET", "/storage/spaces")
        assert not any(s["migrating"] for s in spaces["spaces"])
        status, dropped = await r.api.call("DELETE", f"/storage/spaces/{KEY_B}")
        assert status == 200 and dropped["dim"] == 256


async def test_the_switch_waits_for_a_write_embedded_with_the_old_model(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """A write holds the library gate from embedding to upsert: the switch waits for it, so
    the old model's vector lands in the old space, never in the new one."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        library = r.app.services.library
        old_store = r.app.store
        async with library.gate.shared():  # what Library.ingest_text holds
            vec = (await library.loaded.require_pool().embed_texts(["late write"]))[0]
            status, _ = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
            assert status == 200
            await until(r, "switching")
            await asyncio.sleep(0.5)  # the switch would be done by now without the gate
            assert r.app.pool.model.model_id == "insight/tiny-clap"
            store = library.stores.require_store()
            assert store is old_store and vec.shape == (512,)
            await store.upsert(TRACKS_TEXT, [Point("late", vec, {"model_id": "insight/tiny-clap"})])
        await until(r, "done")
        assert r.app.pool.model.model_id == MODEL_B and r.app.store is not old_store
        assert not await r.app.store.get(TRACKS_TEXT, ["late"])
        assert [p.key for p in await old_store.get(TRACKS_TEXT, ["late"])] == ["late"]


async def test_a_link_deleted_or_changed_while_it_is_made_again_is_settled(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """The relink reads MA tracks' links, then writes their files' new vectors: a delete in
    between is not undone in the next space, a link changed in between is made again."""
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        old_store = r.app.store
        files, _ = await old_store.scroll(TRACKS_AUDIO, None, 10, True)
        first, second = sorted(files, key=lambda p: p.key)
        for key in ("ma-gone", "ma-moved"):
            payload = {"track_id": key, "linked_from": first.key, "model_id": "insight/tiny-clap"}
            await old_store.upsert(TRACKS_AUDIO, [Point(key, first.vector, payload)])
        seen: list[list[str]] = []

        async def step(keys: list[str]) -> None:
            if "ma-gone" not in keys or seen:
                return
            seen.append(keys)
            await r.app.services.library.delete_track("ma-gone")  # mirrored to both spaces
            moved = {"track_id": "ma-moved", "linked_from": second.key}
            await old_store.upsert(TRACKS_AUDIO, [Point("ma-moved", second.vector, moved)])

        r.app.services.models.migrations.step = step
        status, _ = await r.api.call("POST", f"/models/{MODEL_B}/load", {})
        assert status == 200
        done = await until(r, "done")
        assert seen == [["ma-gone", "ma-moved"]]  # the step ran between read and write
        assert r.app.pool.model.model_id == MODEL_B
        new = {p.key: p for p in (await r.app.store.scroll(TRACKS_AUDIO, None, 10, True))[0]}
        assert sorted(new) == sorted([first.key, second.key, "ma-moved"])
        assert new["ma-moved"].payload["linked_from"] == second.key
        assert np.array_equal(new["ma-moved"].vector, new[second.key].vector)
        assert not np.array_equal(new["ma-moved"].vector, new[first.key].vector)
        assert (done["audio_done"], done["audio_total"], done["unrecoverable"]) == (3, 3, 0)


async def test_a_file_moved_mid_migration_keeps_its_new_path_in_the_next_space(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        old_store = r.app.store
        await staged(r)
        src, dest = tmp_path / "music" / "b.flac", tmp_path / "music" / "b renamed.flac"
        track_id = r.app.services.watcher.state.get(str(src)).track_id  # type: ignore[union-attr]
        src.rename(dest)
        for _ in range(200):  # the live watcher applies the move (pausing holds analysis only)
            (point,) = await old_store.get(TRACKS_TEXT, [track_id])
            if point.payload.get("file_path") == str(dest):
                break
            await asyncio.sleep(0.05)
        assert point.payload["file_path"] == str(dest)
        r.app.services.watcher.resume()
        done = await until(r, "done")
        assert r.app.pool.model.model_id == MODEL_B
        for collection in (TRACKS_TEXT, TRACKS_AUDIO):
            (moved,) = await r.app.store.get(collection, [track_id], with_vectors=True)
            assert moved.payload["file_path"] == str(dest) and moved.payload["model_id"] == MODEL_B
            assert moved.vector is not None and moved.vector.shape == (256,)
        assert (done["audio_done"], done["unrecoverable"]) == (2, 0)


async def test_a_migration_cancelled_right_after_a_restart_never_begins(
    tmp_path: Path, tiny_model_dir: Path, hub: FakeHub
) -> None:
    """A restart shows the recorded migration as resuming; a cancel then stops it, whether
    its model is still loading again (then it never begins) or it has begun: it reads as
    cancelled from then on, never as running again, and the old model keeps serving."""
    settings = settings_for(tmp_path, tiny_model_dir, hub)
    async with filled_app(tmp_path, tiny_model_dir, hub) as r:
        await staged(r)
    r = await start_running(settings)
    try:
        status, body = await r.api.call("DELETE", "/models/migration")
        assert status == 200 and body["phase"] == "cancelled", body
        assert body["model_id"] == MODEL_B and body["finished_at"] is not None
        # the resume may still be loading the model (then it never begins) or have begun
        for resume in [t for t in asyncio.all_tasks() if t.get_name() == "migration-resume"]:
            while not resume.done():
                status, state = await r.api.call("GET", "/models/migration")
                assert status == 200 and state["phase"] == "cancelled", state
                await asyncio.sleep(0.01)
            assert resume.result() is None  # cancelled while loading: it never began
        status, state = await r.api.call("GET", "/models/migration")
        assert status == 200 and state["phase"] == "cancelled", state
        assert r.app.pool.model.model_id == "insight/tiny-clap"
        assert r.app.services.library.mirror is None
        assert not (tmp_path / "data" / "migration.json").exists()
        _, system = await r.api.call("GET", "/status")
        assert system["migration"] is None
    finally:
        await stop_running(r)
