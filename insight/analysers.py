"""Analysers: what adds payload fields to a stored track beside its vectors.

Mood (zero-shot over cached prompt embeddings) is one; a tagger, a BPM or key detector are
others. Each gets the vector the track is stored with (the audio one when there is one: it hears
the music) and, where the caller decoded it, the audio at the model's rate, and returns payload
fields. The library merges the fields of every analyser in order; an analyser that fails or
claims a field it did not declare costs only its own fields (logged), never the write.

Adding one touches no library code: a class with ``name``, ``fields`` and ``payload_fields``,
built by the composition root, or installed by a package under the ``insight.analysers`` entry
point group (``discover``), e.g. in its pyproject.toml::

    [project.entry-points."insight.analysers"]
    tempo = "my_package.tempo:TempoAnalyser"
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger("insight.analysers")

ENTRY_POINT_GROUP = "insight.analysers"
# fields the library writes itself: no analyser may replace them
RESERVED = frozenset(
    {"track_id", "name", "artists", "album", "genres", "model_id", "source", "updated_at"}
)


@runtime_checkable
class Analyser(Protocol):
    name: str
    fields: tuple[str, ...]  # the payload fields it may write

    async def payload_fields(
        self, vector: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None
    ) -> dict[str, Any]:
        """Fields to store with the track ({} when it has nothing to say)."""


def discover() -> list[Analyser]:
    """Analysers installed under the ``insight.analysers`` entry point group (built with no
    arguments); one that fails to load is logged and left out."""
    found: list[Analyser] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            analyser = ep.load()()
        except Exception as exc:
            log.warning("analyser_unavailable name=%s error=%s", ep.name, exc)
            continue
        if isinstance(analyser, Analyser):
            found.append(analyser)
        else:
            log.warning("analyser_unavailable name=%s error=not an Analyser", ep.name)
    return found


async def payload_fields(
    analysers: Sequence[Analyser],
    vector: np.ndarray,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
) -> dict[str, Any]:
    """The merged fields of ``analysers`` for one track, in their order."""
    out: dict[str, Any] = {}
    for analyser in analysers:
        try:
            fields = await analyser.payload_fields(vector, audio, sample_rate)
        except Exception as exc:  # one analyser never fails the write
            log.warning("analyser_failed name=%s error=%s", analyser.name, exc)
            continue
        stray = set(fields) - set(analyser.fields) | (set(fields) & RESERVED)
        if stray:
            log.warning(
                "analyser_fields_refused name=%s fields=%s", analyser.name, ",".join(sorted(stray))
            )
        out.update({k: v for k, v in fields.items() if k not in stray})
    return out
