"""The 26 mood labels (3 tiers) and the 4 valence/arousal axis prompts.

Prompts and hints are the original sidecar's, verbatim (``moods.json`` beside this file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from insight.schemas import MoodInfo, MoodTier

VALENCE_POSITIVE_PROMPT = (
    "happy positive uplifting bright cheerful joyful music with major key and optimistic feeling"
)
VALENCE_NEGATIVE_PROMPT = (
    "sad negative dark somber melancholic sorrowful music with minor key and pessimistic feeling"
)
AROUSAL_HIGH_PROMPT = (
    "high energy intense exciting fast loud powerful aggressive music with strong beats"
)
AROUSAL_LOW_PROMPT = (
    "low energy calm quiet slow soft peaceful relaxing ambient music with gentle sounds"
)
# Order matters: the classifier reads them as (V+, V-, A+, A-).
AXIS_PROMPTS = (
    VALENCE_POSITIVE_PROMPT,
    VALENCE_NEGATIVE_PROMPT,
    AROUSAL_HIGH_PROMPT,
    AROUSAL_LOW_PROMPT,
)


@dataclass(frozen=True, slots=True)
class MoodLabel:
    id: str
    name: str
    tier: MoodTier
    prompt: str
    valence_hint: float
    arousal_hint: float

    def info(self) -> MoodInfo:
        return MoodInfo(
            id=self.id,
            name=self.name,
            tier=self.tier,
            valence_hint=self.valence_hint,
            arousal_hint=self.arousal_hint,
            prompt=self.prompt,
        )


@cache
def mood_labels() -> tuple[MoodLabel, ...]:
    """All 26 moods, in the original's order (primary, refined, contextual)."""
    raw = json.loads(resources.files("insight.mood").joinpath("moods.json").read_text("utf-8"))
    return tuple(
        MoodLabel(
            id=m["id"],
            name=m["name"],
            tier=MoodTier(m["tier"]),
            prompt=m["prompt"],
            valence_hint=float(m["valence_hint"]),
            arousal_hint=float(m["arousal_hint"]),
        )
        for m in raw
    )


@cache
def mood_ids() -> frozenset[str]:
    return frozenset(m.id for m in mood_labels())
