"""A real `insight serve` killed (SIGKILL) in the middle of a model migration: the restart
serves the old model, begins the migration again and ends on the new model, with both spaces."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from insight.storage.spaces import space_key
from insight.testing.tiny_clap import build_tiny_clap
from tests.adversarial.conftest import Served, call, start_served
from tests.audio_files import tagged, write_track

MODEL_B = "test-org/tiny-128"


def cache(model_dir: Path, models_dir: Path) -> None:
    """Model B as a verified download (the manifest the downloader writes)."""
    files = [
        {"path": str(p.relative_to(model_dir)), "size": p.stat().st_size}
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    ]
    manifests = models_dir / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    body = {"model_id": MODEL_B, "snapshot": str(model_dir), "files": files}
    (manifests / (MODEL_B.replace("/", "__") + ".json")).write_text(json.dumps(body))


def phase(served: Served, want: str, within_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = call(served, "GET", "/models/migration")
        except urllib.error.HTTPError:
            body = {}
        if body.get("phase") == want:
            return body
        time.sleep(0.1)
    raise AssertionError(f"migration never reached {want}: {body}\n{served.log()[-3000:]}")


def test_sigkill_mid_migration_resumes_on_restart(tmp_path: Path, tiny_model_dir: Path) -> None:
    music = tmp_path / "music"
    write_track(music / "a.flac", tags=tagged("Alpha", "A", "AA", "Rock"), freq=300)
    write_track(music / "b.flac", tags=tagged("Beta", "B", "BB", "Jazz"), freq=600)
    cache(build_tiny_clap(tmp_path / "b", dim=128, seed=4), tmp_path / "data" / "models")
    env = {
        "INSIGHT_MODEL__NAME": "insight/tiny-clap",
        "INSIGHT_WATCHER__FOLDERS": json.dumps([str(music)]),
        "INSIGHT_WATCHER__ENABLED": "true",
    }
    first = start_served(tmp_path, tiny_model_dir, env)
    try:
        call(first, "POST", "/tracks/embed-text", {"track_id": "t1", "metadata": {"name": "One"}})
        deadline = time.monotonic() + 60
        while call(first, "GET", "/watcher/status")["done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        call(first, "POST", "/watcher/pause")
        started = call(first, "POST", f"/models/{MODEL_B}/load", {})
        assert started["migration"]["space"] == space_key(MODEL_B, 128)
        held = phase(first, "audio")
        assert (held["text_done"], held["audio_total"]) == (3, 2)
    finally:
        first.proc.kill()  # no shutdown at all
        first.proc.wait()

    second = start_served(tmp_path, tiny_model_dir, env)
    try:
        done = phase(second, "done")
        assert (done["text_done"], done["audio_done"], done["unrecoverable"]) == (3, 2, 0)
        emb = call(second, "POST", "/embed/text", {"text": "One"})["embedding"]
        assert len(emb) == 128
        found = call(second, "POST", "/tracks/search-text", {"query": "One"})["results"]
        assert "t1" in [r["track_id"] for r in found]
        spaces = {s["dim"]: s for s in call(second, "GET", "/storage/spaces")["spaces"]}
        assert spaces[128]["current"] and not spaces[512]["current"]
        for dim in (128, 512):
            assert spaces[dim]["counts"]["tracks_text"] == 3
            assert spaces[dim]["counts"]["tracks_audio"] == 2
        assert not (tmp_path / "data" / "migration.json").exists()
    finally:
        second.stop()
