"""Analysers add payload fields beside mood without touching the library code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from insight.analysers import Analyser, discover, payload_fields
from insight.storage.base import TRACKS_TEXT
from tests.conftest import Running


class Brightness:
    """A stand-in tagger: a number read off the vector."""

    name = "brightness"
    fields = ("brightness",)

    async def payload_fields(
        self, vector: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None
    ) -> dict[str, Any]:
        return {"brightness": round(float(np.asarray(vector)[:8].sum()), 6)}


class Broken:
    name = "broken"
    fields = ("broken",)

    async def payload_fields(
        self, vector: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None
    ) -> dict[str, Any]:
        raise RuntimeError("model file missing")


class Greedy:
    """Claims a field it did not declare and one the library owns."""

    name = "greedy"
    fields = ("greedy",)

    async def payload_fields(
        self, vector: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None
    ) -> dict[str, Any]:
        return {"greedy": 1, "primary_mood": "hijacked", "track_id": "other"}


async def test_an_analyser_adds_fields_beside_mood(running: Running) -> None:
    library = running.app.services.library
    library.analysers.extend([Brightness(), Broken(), Greedy()])
    status, _ = await running.api.call(
        "POST", "/tracks/embed-text", {"track_id": "t1", "metadata": {"name": "Calm Song"}}
    )
    assert status == 200
    (point,) = await running.app.require_store().get(TRACKS_TEXT, ["t1"], with_vectors=True)
    assert point.vector is not None
    assert point.payload["brightness"] == round(float(point.vector[:8].sum()), 6)
    assert point.payload["primary_mood"] not in (None, "hijacked")  # mood still there, its own
    assert point.payload["track_id"] == "t1" and point.payload["greedy"] == 1
    assert "broken" not in point.payload


async def test_payload_fields_in_order_and_isolated() -> None:
    v = np.ones(16, np.float32)
    assert isinstance(Brightness(), Analyser)
    fields = await payload_fields([Broken(), Brightness(), Greedy()], v)
    assert fields == {"brightness": 8.0, "greedy": 1}


def test_installed_analysers_are_discovered(tmp_path: Path) -> None:
    (tmp_path / "tempo_plugin.py").write_text(
        "class Tempo:\n"
        "    name = 'tempo'\n"
        "    fields = ('bpm_estimate',)\n"
        "    async def payload_fields(self, vector, audio=None, sample_rate=None):\n"
        "        return {'bpm_estimate': 120.0}\n"
        "class NotOne:\n"
        "    pass\n"
    )
    dist = tmp_path / "tempo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tempo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[insight.analysers]\ntempo = tempo_plugin:Tempo\nnot_one = tempo_plugin:NotOne\n"
        "missing = tempo_plugin:Missing\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        found = discover()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tempo_plugin", None)
    assert [a.name for a in found] == ["tempo"]
