"""The folder watcher on a generated library: scan, metadata, live changes, pause/resume,
restart, moves, corrupt files, and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.watcher.scanner import path_track_id
from insight.watcher.service import WatcherService
from tests.audio_files import CLAP_SPEC, tagged, write_track

MBID = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"


def make_library(root: Path) -> dict[str, dict[str, Any]]:
    """A small library; returns the expected tracks by relative path."""
    expected: dict[str, dict[str, Any]] = {}

    def add(rel: str, meta: dict[str, Any], tags: dict[str, str] | None, freq: float) -> None:
        write_track(root / rel, freq=freq, tags=tags)
        expected[rel] = meta

    add(
        "Artist A/Album X/01 First.mp3",
        {"name": "First", "artists": ["Artist A"], "album": "Album X", "genres": ["Rock"]},
        tagged("First", "Artist A", "Album X", "Rock"),
        330,
    )
    add(
        "Artist A/Album X/02 Second.flac",
        {
            "name": "Second",
            "artists": ["Artist A", "Guest"],
            "album": "Album X",
            "genres": ["Rock", "Indie"],
            "mbid": MBID,
        },
        tagged("Second", "Artist A; Guest", "Album X", "Rock; Indie", MUSICBRAINZ_TRACKID=MBID),
        440,
    )
    add(
        "B/Opus Song.ogg",
        {"name": "Opus Song", "artists": ["Band B"], "album": "Ogg Album", "genres": ["Jazz"]},
        tagged("Opus Song", "Band B", "Ogg Album", "Jazz"),
        550,
    )
    add(
        "B/deep/nested/Deep.m4a",
        {"name": "Deep Cut", "artists": ["Band B"], "album": "Nested", "genres": ["Ambient"]},
        tagged("Deep Cut", "Band B", "Nested", "Ambient"),
        660,
    )
    add(
        "No Tags Here.flac",
        {"name": "No Tags Here", "artists": [], "album": None, "genres": []},
        None,
        770,
    )
    (root / "broken.mp3").write_bytes(
        b"ID3" + bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8))
    )
    (root / "notes.txt").write_text("not music")
    (root / ".hidden.mp3").write_bytes(b"x")
    return expected


def expected_id(root: Path, rel: str, meta: dict[str, Any]) -> str:
    return f"mb:{meta['mbid']}" if meta.get("mbid") else path_track_id(root, root / rel)


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def watcher_of(r: Running) -> WatcherService:
    svc = r.app.services.watcher
    assert svc is not None
    return svc


async def start_stack(data: Path, model: Path, **watcher: Any) -> Running:
    settings = make_settings(
        data, model, watcher={"debounce_s": 0.2, "scan_interval_s": 0, **watcher}
    )
    return await start_running(settings)


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    root = tmp_path / "music"
    return root, make_library(root)


@pytest_asyncio.fixture
async def stack(
    tmp_path: Path, tiny_model_dir: Path, library: tuple[Path, dict[str, Any]]
) -> AsyncIterator[Running]:
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(library[0])])
    yield r
    await stop_running(r)


async def stored_ids(r: Running, collection: str = TRACKS_TEXT) -> set[str]:
    points, _ = await r.app.store.scroll(collection, limit=10_000)
    return {p.key for p in points}


async def test_scan_stores_the_expected_tracks(
    stack: Running, library: tuple[Path, dict[str, Any]]
) -> None:
    root, expected = library
    w = watcher_of(stack)
    assert w.status().state == "stopped"
    await w.start()
    await w.wait_idle(60)
    ids = {expected_id(root, rel, m): (rel, m) for rel, m in expected.items()}
    assert await stored_ids(stack) == set(ids)
    assert await stored_ids(stack, TRACKS_AUDIO) == set(ids)
    points = await stack.app.store.get(TRACKS_TEXT, list(ids))
    for p in points:
        rel, meta = ids[p.key]
        got = {k: p.payload.get(k) for k in ("name", "artists", "album", "genres")}
        assert got == {k: meta[k] for k in got}, rel
        assert p.payload["file_path"] == str(root / rel)
        assert p.payload["source"] == "watcher"
        assert p.payload["model_id"] == stack.app.pool.model.model_id
    st = w.status()
    assert (st.done, st.failed, st.pending) == (5, 1, 0)
    assert st.state == "watching"
    failures = w.failures()
    assert [f["path"] for f in failures] == [str(root / "broken.mp3")]
    assert "undecodable" in failures[0]["error"]
    # HTTP status agrees
    status, body = await stack.api.call("GET", "/watcher/status")
    assert status == 200 and body["done"] == 5 and body["failed"] == 1


async def test_restart_skips_done_files_and_detects_offline_moves(
    tmp_path: Path, tiny_model_dir: Path, library: tuple[Path, dict[str, Any]]
) -> None:
    root, _expected = library
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    await watcher_of(r).start()
    await watcher_of(r).wait_idle(60)
    assert watcher_of(r).outcomes["analyzed"] == 5
    await stop_running(r)
    # while stopped: move one file, delete one, add one
    old_rel = "B/Opus Song.ogg"
    moved_id = path_track_id(root, root / old_rel)
    (root / "C").mkdir()
    shutil.move(root / old_rel, root / "C" / "Renamed.ogg")
    (root / "No Tags Here.flac").unlink()
    write_track(root / "C" / "new.mp3", tags=tagged("New", "N", "Nn", "Pop"), freq=880)
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    try:
        w = watcher_of(r)
        await w.start()
        await w.wait_idle(60)
        assert w.outcomes["analyzed"] == 1  # only the new file
        ids = await stored_ids(r)
        assert moved_id in ids
        assert path_track_id(root, root / "No Tags Here.flac") not in ids
        assert path_track_id(root, root / "C" / "new.mp3") in ids
        (p,) = await r.app.store.get(TRACKS_TEXT, [moved_id])
        assert p.payload["file_path"] == str(root / "C" / "Renamed.ogg")
        assert w.status().done == 5
        # a forced scan re-analyses everything (the corrupt file fails again)
        w.scan(force=True)
        await w.wait_idle(60)
        assert w.outcomes["analyzed"] == 6
        assert w.status().failed == 1
    finally:
        await stop_running(r)


async def test_live_add_modify_move_delete(
    stack: Running, library: tuple[Path, dict[str, Any]]
) -> None:
    root, _ = library
    w = watcher_of(stack)
    await w.start()
    await w.wait_idle(60)
    base = w.outcomes["analyzed"]

    async def payload(track_id: str) -> dict[str, Any] | None:
        pts = await stack.app.store.get(TRACKS_TEXT, [track_id])
        return pts[0].payload if pts else None

    # add
    new = write_track(root / "Live" / "new.flac", tags=tagged("Live One", "L", "LA", "Funk"))
    tid = path_track_id(root, new)

    async def added() -> bool:
        return (await payload(tid) or {}).get("name") == "Live One"

    await until(added)
    # modify (new tags)
    tmp = write_track(
        root.parent / "staging.flac", tags=tagged("Live Two", "L", "LA", "Funk"), freq=990
    )
    shutil.copyfile(tmp, new)

    async def modified() -> bool:
        return (await payload(tid) or {}).get("name") == "Live Two"

    await until(modified)
    analyzed = w.outcomes["analyzed"]
    assert analyzed == base + 2
    # move: same id, new path, no re-analysis
    dest = root / "Live" / "sub" / "renamed.flac"
    dest.parent.mkdir()
    new.rename(dest)

    async def moved() -> bool:
        return (await payload(tid) or {}).get("file_path") == str(dest)

    await until(moved)
    await asyncio.sleep(0.5)
    assert w.outcomes["analyzed"] == analyzed
    # delete
    dest.unlink()

    async def deleted() -> bool:
        return await payload(tid) is None and tid not in await stored_ids(stack, TRACKS_AUDIO)

    await until(deleted)
    # a whole folder removed
    shutil.rmtree(root / "B")
    gone = path_track_id(root, root / "B/deep/nested/Deep.m4a")

    async def folder_gone() -> bool:
        return gone not in await stored_ids(stack)

    await until(folder_gone)


async def test_pause_and_resume(stack: Running, library: tuple[Path, dict[str, Any]]) -> None:
    _root, expected = library
    w = watcher_of(stack)
    status, _ = await stack.api.call("POST", "/watcher/pause")
    assert status == 200
    await w.start()
    await asyncio.sleep(1.0)
    st = w.status()
    assert st.state == "paused"
    assert st.done == 0 and st.pending == 6
    assert await stored_ids(stack) == set()
    status, _ = await stack.api.call("POST", "/watcher/resume")
    assert status == 200
    await w.wait_idle(60)
    assert w.status().done == 5
    assert len(await stored_ids(stack)) == len(expected)


async def test_sampled_mode(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "m"
    write_track(root / "long.flac", seconds=45, tags=tagged("Long", "A", "B", "C"))
    write_track(root / "short.mp3", seconds=2, tags=tagged("Short", "A", "B", "C"))
    r = await start_stack(
        tmp_path / "data", tiny_model_dir, folders=[str(root)], mode="sampled", sampled_windows=3
    )
    try:
        w = watcher_of(r)
        result = await w.analyze(root / "long.flac")
        assert result.windows == 3
        assert abs(result.duration_s - 45) < 0.5
        assert np.isclose(np.linalg.norm(result.vector), 1.0, atol=1e-4)
        full = await r.app.pool.embed_audio(*_decoded(root / "long.flac"))
        assert float(np.dot(full[0], result.vector)) > 0.9  # same music, fewer windows
        await w.start()
        await w.wait_idle(60)
        assert len(await stored_ids(r, TRACKS_AUDIO)) == 2
        assert w.status().mode == "sampled"
    finally:
        await stop_running(r)


def _decoded(path: Path) -> tuple[np.ndarray, float, float]:
    from insight.watcher.decode import decode_full

    d = decode_full(path, CLAP_SPEC)
    assert d.audio is not None
    return d.audio, 10.0, 10.0


async def test_endpoints(
    stack: Running, library: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, _ = library
    api = stack.api
    status, body = await api.call("GET", "/watcher/folders")
    assert status == 200 and [f["path"] for f in body["folders"]] == [str(root)]
    extra = tmp_path / "extra"
    write_track(extra / "x.mp3", tags=tagged("X", "Y", "Z", "W"))
    status, body = await api.call("POST", "/watcher/folders", {"path": str(extra) + "/./"})
    assert status == 200 and body["path"] == str(extra)
    status, body = await api.call("POST", "/watcher/folders", {"path": str(extra)})
    assert status == 409, body
    status, body = await api.call("POST", "/watcher/folders", {"path": str(root / "B")})
    assert status == 409, body  # already covered by a recursive folder
    status, body = await api.call("POST", "/watcher/folders", {"path": str(tmp_path / "nope")})
    assert status == 400, body
    status, body = await api.call("POST", "/watcher/folders", {"path": "relative/dir"})
    assert status == 400, body
    status, body = await api.call("POST", "/watcher/start")
    assert status == 200
    status, body = await api.call("POST", "/watcher/scan", {"force": False})
    assert status == 200
    w = watcher_of(stack)
    await w.wait_idle(60)
    xid = path_track_id(extra, extra / "x.mp3")
    assert xid in await stored_ids(stack)
    status, body = await api.call("GET", "/watcher/status")
    assert body["state"] == "watching" and body["done"] == 6
    status, body = await api.call("DELETE", f"/watcher/folders{extra}")
    assert status == 200, body
    status, body = await api.call("DELETE", f"/watcher/folders{extra}")
    assert status == 404, body
    status, body = await api.call("GET", "/watcher/folders")
    assert [f["path"] for f in body["folders"]] == [str(root)]
    status, body = await api.call("POST", "/watcher/stop")
    assert status == 200
    status, body = await api.call("GET", "/watcher/status")
    assert body["state"] == "stopped"


def test_track_id_is_documented_hash(tmp_path: Path) -> None:
    rel = "Artist/Album/song.mp3"
    want = "file:" + hashlib.sha256(rel.encode()).hexdigest()[:32]
    assert path_track_id(tmp_path, tmp_path / rel) == want
    assert path_track_id(Path("/elsewhere"), Path("/elsewhere") / rel) == want


async def test_cli_scan_one_shot(
    tmp_path: Path,
    tiny_model_dir: Path,
    library: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from insight.watcher.cli import run_scan

    root, _expected = library
    settings = make_settings(tmp_path / "cli-data", tiny_model_dir)
    assert await run_scan(settings, root, force=False) == 0
    out = capsys.readouterr()
    assert "analysed 5, failed 1" in out.out
    # stderr is not a terminal here: no bar, no carriage returns, a plain closing line
    assert "\r" not in out.err
    closing = r"^scan: 6/6 tracks \(1 failed\), [\d,]+/h, elapsed \S+, ETA \S+$"
    assert re.search(closing, out.err, re.M), out.err
    assert await run_scan(settings, root, force=False) == 0  # second run: nothing to do
    assert "analysed 0, failed 0" in capsys.readouterr().out
