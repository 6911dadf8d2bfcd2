"""Zero-shot mood classification: cosine to cached prompt embeddings, softmax per tier.

Scoring follows the original sidecar (seed §4.2): for each requested tier, cosine of the vector
to every mood prompt of the tier, softmax at temperature 0.1 over the whole tier, the tier's
``top_k`` kept; all kept scores sorted by confidence; ``primary_mood`` is the best primary one.

Valence/arousal — one deliberate change. The original uses only the axis prompt pairs:
``clamp(cos(e, V+) - cos(e, V-))``. A difference of two CLAP cosines is compressed (cosines of
music to prompts sit in a narrow band, so the difference rarely leaves ±0.2) and it ignores the
26 curated (valence, arousal) hints entirely: a vector that *is* the "sad" prompt gets whatever
the axis pair says, often ~0. We blend it with the hints weighted by the mood probabilities
(softmax at T=0.1 over all 26 moods): ``va = clamp(0.5 * axis + 0.5 * Σ p_i · hint_i)``. The
hint term spans the circumplex, agrees with the mood we report (a "sad" track gets negative
valence), and keeps V/A filters (``min_valence`` ...) meaningful. ``test_mood.py`` shows the
difference on a prompt bank where the axis term is 0.

Prompt embeddings are computed once per model (one batched text inference of 30 prompts) and
cached; ``on_model_loaded`` rebuilds them on every (re)load, so ``classify`` never runs text
inference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from insight.errors import BadRequest
from insight.mood.labels import AXIS_PROMPTS, MoodLabel, mood_labels
from insight.schemas import MoodClassification, MoodScore, MoodTier
from insight.vectors import unit, unit_rows

if TYPE_CHECKING:
    from insight.state import ModelSlot

log = logging.getLogger("insight.mood")

TEMPERATURE = 0.1
AXIS_WEIGHT = 0.5  # share of the axis prompt pair in V/A; the rest comes from the mood hints
DEFAULT_TIERS = (MoodTier.PRIMARY, MoodTier.REFINED)
DEFAULT_TOP_K = 3


def _softmax(sims: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    z = np.exp((sims - sims.max()) / temperature)
    return np.asarray(z / z.sum(), dtype=np.float64)


@dataclass(frozen=True)
class PromptBank:
    """Normalised prompt embeddings of one model: 26 moods + 4 axis prompts."""

    model_id: str
    labels: tuple[MoodLabel, ...]
    moods: np.ndarray  # [26, dim]
    axes: np.ndarray  # [4, dim]: V+, V-, A+, A-
    hints: np.ndarray  # [26, 2]: valence_hint, arousal_hint
    tier_index: dict[MoodTier, np.ndarray]

    @property
    def dim(self) -> int:
        return int(self.moods.shape[1])

    @classmethod
    def build(cls, model_id: str, mood_vectors: np.ndarray, axis_vectors: np.ndarray) -> PromptBank:
        labels = mood_labels()
        if mood_vectors.shape[0] != len(labels) or axis_vectors.shape[0] != len(AXIS_PROMPTS):
            raise ValueError("prompt bank needs one vector per mood and per axis prompt")
        tiers = [m.tier for m in labels]
        return cls(
            model_id=model_id,
            labels=labels,
            moods=unit_rows(mood_vectors),
            axes=unit_rows(axis_vectors),
            hints=np.array([[m.valence_hint, m.arousal_hint] for m in labels], dtype=np.float64),
            tier_index={t: np.array([i for i, x in enumerate(tiers) if x == t]) for t in MoodTier},
        )

    @staticmethod
    def texts() -> list[str]:
        """What to embed, in order: the 26 mood prompts (raw, no template), then the axes."""
        return [m.prompt for m in mood_labels()] + list(AXIS_PROMPTS)

    @classmethod
    def from_embeddings(cls, model_id: str, embedded: np.ndarray) -> PromptBank:
        n = len(mood_labels())
        return cls.build(model_id, embedded[:n], embedded[n:])


def classify(
    bank: PromptBank,
    vector: Any,
    tiers: Sequence[MoodTier] = DEFAULT_TIERS,
    top_k: int = DEFAULT_TOP_K,
    include_va: bool = True,
) -> MoodClassification:
    """Classify one embedding against ``bank`` (pure, no inference)."""
    v = unit(vector, bank.dim, "embedding")
    sims = bank.moods @ v
    details: list[MoodScore] = []
    for tier in tiers:
        idx = bank.tier_index[MoodTier(tier)]
        if idx.size == 0:
            continue
        probs = _softmax(sims[idx])
        for j in np.argsort(-probs, kind="stable")[:top_k]:
            label = bank.labels[int(idx[j])]
            details.append(
                MoodScore(
                    mood=label.id, name=label.name, confidence=float(probs[j]), tier=label.tier
                )
            )
    details.sort(key=lambda d: d.confidence, reverse=True)
    scores: dict[str, float] = {}
    for d in details:
        scores[d.mood] = max(scores.get(d.mood, 0.0), d.confidence)
    primary = next((d.mood for d in details if d.tier == MoodTier.PRIMARY), None)
    out = MoodClassification(
        primary_mood=primary,
        moods=list(dict.fromkeys(d.mood for d in details)),
        mood_scores=scores,
        details=details,
    )
    if include_va:
        out.valence, out.arousal = valence_arousal(bank, v, sims)
    return out


def valence_arousal(
    bank: PromptBank, unit: np.ndarray, sims: np.ndarray | None = None
) -> tuple[float, float]:
    """(valence, arousal) in [-1, 1]: axis prompt pairs blended with probability-weighted hints."""
    if sims is None:
        sims = bank.moods @ unit
    a = bank.axes @ unit
    axis = np.array([a[0] - a[1], a[2] - a[3]], dtype=np.float64)
    hinted = _softmax(sims) @ bank.hints
    va = np.clip(AXIS_WEIGHT * axis + (1.0 - AXIS_WEIGHT) * hinted, -1.0, 1.0)
    return float(va[0]), float(va[1])


class MoodClassifier:
    """The mood service (``app.services.mood``): caches prompt embeddings per model."""

    def __init__(self, loaded: ModelSlot) -> None:
        self._loaded = loaded
        self._bank: PromptBank | None = None
        self._lock = asyncio.Lock()

    @property
    def cached(self) -> PromptBank | None:
        return self._bank

    async def on_model_loaded(self, model: Any) -> None:
        """Rebuild the prompt bank for a freshly (re)loaded model."""
        texts = PromptBank.texts()
        async with self._lock:
            embedded = await asyncio.to_thread(model.embed_text, texts)
            self._bank = PromptBank.from_embeddings(model.model_id, embedded)
        log.info("mood_prompts_cached model=%s moods=%d", model.model_id, len(texts) - 4)

    async def bank(self) -> PromptBank:
        """The prompt bank of the loaded model (built once, on first use if not yet)."""
        pool = self._loaded.require_pool()
        model = pool.model
        bank = self._bank
        if bank is not None and bank.model_id == model.model_id and bank.dim == model.dim:
            return bank
        async with self._lock:
            bank = self._bank
            if bank is None or bank.model_id != model.model_id or bank.dim != model.dim:
                embedded = await pool.embed_texts(PromptBank.texts())
                bank = PromptBank.from_embeddings(model.model_id, embedded)
                self._bank = bank
            return bank

    async def classify(
        self,
        vector: Any,
        tiers: Sequence[MoodTier] = DEFAULT_TIERS,
        top_k: int = DEFAULT_TOP_K,
        include_va: bool = True,
    ) -> MoodClassification:
        return classify(await self.bank(), vector, tiers, top_k, include_va)

    async def mood_fields(self, vector: np.ndarray) -> dict[str, Any]:
        """Payload fields to store with a track: primary_mood, moods, mood_scores, valence,
        arousal. Empty when no model is loaded or the vector does not fit the model (a track
        stored from pre-computed vectors is still stored, just without mood)."""
        if self._loaded.pool is None:
            return {}
        try:
            c = await self.classify(vector)
        except BadRequest as e:
            log.warning("mood_skipped reason=%s", e.message)
            return {}
        return {
            "primary_mood": c.primary_mood,
            "moods": c.moods,
            "mood_scores": c.mood_scores,
            "valence": c.valence,
            "arousal": c.arousal,
        }

    # --- as an analyser (insight.analysers) ------------------------------------------------

    name = "mood"
    fields: tuple[str, ...] = ("primary_mood", "moods", "mood_scores", "valence", "arousal")

    async def payload_fields(
        self, vector: np.ndarray, audio: np.ndarray | None = None, sample_rate: int | None = None
    ) -> dict[str, Any]:
        """Mood is read off the vector (audio unused): ``mood_fields``."""
        return await self.mood_fields(vector)
