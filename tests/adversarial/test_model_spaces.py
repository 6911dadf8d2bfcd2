"""Model spaces across restarts of a real `insight serve`: another dimension on the same data
dir, back again, and a spaces.json that was mangled in between."""

from __future__ import annotations

from pathlib import Path

from insight.testing.tiny_clap import build_tiny_clap
from tests.adversarial.conftest import Served, call, start_served


def store_and_find(served: Served, track_id: str, name: str) -> list[str]:
    call(served, "POST", "/tracks/embed-text", {"track_id": track_id, "metadata": {"name": name}})
    emb = call(served, "POST", "/embed/text", {"metadata": {"name": name}})["embedding"]
    found = call(served, "POST", "/tracks/search", {"embedding": emb, "collection": "text"})
    return [r["track_id"] for r in found["results"]]


def test_switching_dimensions_across_restarts(tmp_path: Path, tiny_model_dir: Path) -> None:
    big = build_tiny_clap(tmp_path / "big", dim=1024, seed=5)
    first = start_served(tmp_path, tiny_model_dir)
    try:
        assert store_and_find(first, "small-1", "Quiet Song") == ["small-1"]
    finally:
        first.stop()

    second = start_served(tmp_path, big)  # the same data dir, a 1024-d model
    try:
        assert call(second, "GET", "/health")["status"] == "healthy"
        assert store_and_find(second, "big-1", "Loud Song") == ["big-1"]
        spaces = call(second, "GET", "/storage/spaces")["spaces"]
        assert sorted((s["dim"], s["current"]) for s in spaces) == [(512, False), (1024, True)]
    finally:
        second.stop()

    catalog = tmp_path / "data" / "spaces.json"
    catalog.write_text("{not json")  # mangled: the spaces themselves are still there
    third = start_served(tmp_path, big)
    try:
        emb = call(third, "POST", "/embed/text", {"metadata": {"name": "Loud Song"}})["embedding"]
        found = call(third, "POST", "/tracks/search", {"embedding": emb, "collection": "text"})
        assert [r["track_id"] for r in found["results"]] == ["big-1"]
    finally:
        third.stop()

    fourth = start_served(tmp_path, tiny_model_dir)  # back to the first model
    try:
        emb = call(fourth, "POST", "/embed/text", {"metadata": {"name": "Quiet Song"}})
        found = call(
            fourth, "POST", "/tracks/search", {"embedding": emb["embedding"], "collection": "text"}
        )
        assert [r["track_id"] for r in found["results"]] == ["small-1"]
    finally:
        fourth.stop()
