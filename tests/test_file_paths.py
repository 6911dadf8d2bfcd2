"""Tracks' file paths are kept in the store but shown in results only when the operator says so
(INSIGHT_SERVER__EXPOSE_FILE_PATHS); the watcher's own endpoints keep showing paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings, start_running, stop_running

from insight.library import TextItem, track_metadata
from insight.schemas import HashedMetadata
from insight.storage.base import TRACKS_TEXT
from insight.taste.tracks import metadata_of

PATHS = {
    "file:a": "/home/alice/Music/Blue Band/Calm Sea.flac",
    "file:b": "/home/alice/Music/Red Band/Storm.mp3",
}


def test_metadata_hides_the_path_by_default() -> None:
    payload = {"track_id": "file:a", "name": "Calm Sea", "file_path": PATHS["file:a"]}
    assert track_metadata(payload).file_path is None
    assert track_metadata(payload, file_paths=True).file_path == PATHS["file:a"]
    assert metadata_of("file:a", payload).file_path is None
    assert metadata_of("file:a", payload, file_paths=True).file_path == PATHS["file:a"]
    assert payload["file_path"] == PATHS["file:a"]  # the caller's payload is not changed


async def results_of(r: Any) -> dict[str, list[str | None]]:
    """file_path of every result of every track endpoint that returns metadata."""
    out: dict[str, list[str | None]] = {}
    code, body = await r.api.call("POST", "/tracks/search-text", {"query": "sea", "limit": 5})
    assert code == 200, body
    out["search-text"] = sorted(x["metadata"]["file_path"] or "-" for x in body["results"])
    code, got = await r.api.call("GET", "/tracks/file:a?include_text=true")
    assert code == 200, got
    out["get"] = [got["metadata"]["file_path"]]
    code, body = await r.api.call(
        "POST", "/tracks/search", {"embedding": got["text_embedding"], "limit": 5}
    )
    assert code == 200, body
    out["search"] = sorted(x["metadata"]["file_path"] or "-" for x in body["results"])
    code, body = await r.api.call("GET", "/tracks/file:a/similar")
    assert code == 200, body
    out["similar"] = [x["metadata"]["file_path"] for x in body["results"]]
    return out


@pytest.mark.parametrize("expose", [False, True])
async def test_results_show_paths_only_when_exposed(
    tmp_path: Path, tiny_model_dir: Path, expose: bool
) -> None:
    settings = make_settings(
        tmp_path / "data", tiny_model_dir, server={"expose_file_paths": expose}
    )
    r = await start_running(settings)
    try:
        items = [
            TextItem(tid, HashedMetadata(name=Path(p).stem), source="watcher", file_path=p)
            for tid, p in PATHS.items()
        ]
        await r.app.services.library.ingest_text(items)
        stored = await r.app.store.get(TRACKS_TEXT, list(PATHS))
        assert {p.key: p.payload["file_path"] for p in stored} == PATHS  # kept in the store
        got = await results_of(r)
        a, b = PATHS["file:a"], PATHS["file:b"]
        if expose:
            assert got == {
                "search-text": sorted([a, b]),
                "get": [a],
                "search": sorted([a, b]),
                "similar": [b],
            }
        else:
            assert got == {
                "search-text": ["-", "-"],
                "get": [None],
                "search": ["-", "-"],
                "similar": [None],
            }
    finally:
        await stop_running(r)
