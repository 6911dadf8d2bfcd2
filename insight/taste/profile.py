"""Taste profiles: interactions → signed per-track weights → taste and distaste vectors.

Follows the original sidecar (seed §5) where it was right and changes it where it was not:

- Both interaction forms. Events (``signal_type``) use the original's weights and completion
  bonus; SPEC's aggregates use ``log2(1 + plays) + 2·favorite - 0.5·log2(1 + skips)`` (plays
  with diminishing returns, so one track on repeat does not become the whole profile).
- Signals are summed **per track** before the sign is taken: a track played five times and
  skipped once is liked, not half-liked and half-disliked (the original split every event).
- Recency decay ``0.5 ** (age_days / half_life_days)`` (settings; the original hard-coded
  0.95/day, a 13.5-day half-life). Interactions older than ``cutoff_days`` are dropped, except
  favorites (a standing preference). An aggregate without any timestamp counts at half weight.
- Positive tracks build the taste vector (weighted mean, minus 30 % of the distaste mean as in
  the original); negative tracks build a separate, stored **distaste** vector that
  recommendations steer away from (the original only subtracted it).
- Tracks without an embedding are reported, not fatal (the original failed with a 500).
- ``track_count`` counts liked tracks (the original counted positive events);
  ``confidence = n / (n + 20)`` as the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from insight.errors import BadRequest
from insight.schemas import SignalType, UserInteraction

DAY_S = 86_400.0
PLAY_WEIGHT = 1.0
FAVORITE_WEIGHT = 2.0
SKIP_WEIGHT = 0.5
UNKNOWN_AGE_FACTOR = 0.5
DISTASTE_IMPACT = 0.3
CONFIDENCE_K = 20.0
MAX_ANCHORS = 16
MIN_MOOD_TRACKS = 2

SIGNAL_WEIGHTS: dict[SignalType, float] = {
    SignalType.FULL_PLAY: 1.0,
    SignalType.PARTIAL_PLAY: 0.7,
    SignalType.SKIP: -0.3,
    SignalType.REPEAT: 1.5,
    SignalType.FAVORITE: 2.0,
    SignalType.DISLIKE: -1.0,
    SignalType.SAVE: 1.5,
}


def decay(age_days: float, half_life_days: float) -> float:
    """Recency factor: 1 now, 0.5 one half-life ago; future timestamps count as now."""
    return float(0.5 ** (max(age_days, 0.0) / half_life_days))


def base_weight(ix: UserInteraction) -> float:
    """Signed weight of one interaction before recency."""
    aggregate = ix.play_count is not None or ix.skip_count is not None or ix.is_favorite is not None
    if ix.signal_type is not None and not aggregate:
        w = SIGNAL_WEIGHTS[ix.signal_type]
        if ix.signal_type in (SignalType.FULL_PLAY, SignalType.PARTIAL_PLAY):
            secs, dur = ix.seconds_played or 0.0, ix.duration or 0.0
            completion = secs / dur if dur > 0 else 0.0
            if completion > 0.5:
                w += 0.5 * min(completion, 1.0)
        return w
    plays, skips = ix.play_count or 0, ix.skip_count or 0
    return (
        PLAY_WEIGHT * math.log2(1 + plays)
        + (FAVORITE_WEIGHT if ix.is_favorite else 0.0)
        - SKIP_WEIGHT * math.log2(1 + skips)
    )


def _is_favorite(ix: UserInteraction) -> bool:
    return bool(ix.is_favorite) or ix.signal_type in (SignalType.FAVORITE, SignalType.SAVE)


def interaction_weight(
    ix: UserInteraction, now: float, half_life_days: float, cutoff_days: float
) -> float | None:
    """Signed, recency-weighted weight; None when outside the cutoff window."""
    ts = ix.timestamp if ix.timestamp is not None else ix.last_played
    if ts is None or ts <= 0:
        return base_weight(ix) * UNKNOWN_AGE_FACTOR
    age = (now - ts) / DAY_S
    if age > cutoff_days and not _is_favorite(ix):
        return None
    return base_weight(ix) * decay(age, half_life_days)


def track_weights(
    interactions: Iterable[UserInteraction],
    now: float,
    half_life_days: float,
    cutoff_days: float,
) -> dict[str, float]:
    """Net signed weight per track (tracks whose signals cancel out are dropped)."""
    out: dict[str, float] = {}
    for ix in interactions:
        w = interaction_weight(ix, now, half_life_days, cutoff_days)
        if w is not None:
            out[ix.track_id] = out.get(ix.track_id, 0.0) + w
    return {k: v for k, v in out.items() if abs(v) > 1e-9}


def normalise(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 and math.isfinite(n) else None


@dataclass
class TasteVectors:
    taste: np.ndarray
    distaste: np.ndarray | None
    track_count: int
    disliked_count: int
    confidence: float
    total_weight: float
    anchors: list[tuple[str, float]] = field(default_factory=list)  # top liked tracks


def confidence(n: int) -> float:
    return min(n / (n + CONFIDENCE_K), 1.0)


def _weighted_mean(ids: list[str], w: np.ndarray, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    m = np.stack([vectors[t] for t in ids]).astype(np.float64)
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    return np.asarray((w @ m) / w.sum())


def build_profile(
    weights: Mapping[str, float], vectors: Mapping[str, np.ndarray], what: str = "tracks"
) -> TasteVectors:
    """Taste (liked) and distaste (skipped/disliked) vectors from weighted track vectors."""
    pos = [t for t, w in weights.items() if w > 0 and t in vectors]
    neg = [t for t, w in weights.items() if w < 0 and t in vectors]
    if not pos:
        raise BadRequest(
            f"no positive signals among the {what} with embeddings: a profile needs at least "
            "one played or favorited track (skips and dislikes alone only say what to avoid)"
        )
    wp = np.array([weights[t] for t in pos])
    taste = _weighted_mean(pos, wp, vectors)
    distaste = None
    if neg:
        wn = -np.array([weights[t] for t in neg])
        neg_mean = _weighted_mean(neg, wn, vectors)
        taste = taste - DISTASTE_IMPACT * neg_mean
        distaste = normalise(neg_mean)
    unit = normalise(taste)
    if unit is None:
        raise BadRequest(f"the liked and disliked {what} cancel out; no taste direction is left")
    order = np.argsort(-wp, kind="stable")[:MAX_ANCHORS]
    return TasteVectors(
        taste=unit,
        distaste=distaste,
        track_count=len(pos),
        disliked_count=len(neg),
        confidence=confidence(len(pos)),
        total_weight=float(wp.sum()),
        anchors=[(pos[i], float(wp[i])) for i in order],
    )


def mood_groups(
    weights: Mapping[str, float], moods: Mapping[str, str | None]
) -> dict[str, dict[str, float]]:
    """Per primary mood, the weights of the liked tracks of that mood (and every dislike).

    Moods with fewer than ``MIN_MOOD_TRACKS`` liked tracks are left out: one track is a
    seed, not a taste.
    """
    neg = {t: w for t, w in weights.items() if w < 0}
    groups: dict[str, dict[str, float]] = {}
    for t, w in weights.items():
        mood = moods.get(t)
        if w > 0 and mood:
            groups.setdefault(mood, {})[t] = w
    return {m: {**g, **neg} for m, g in groups.items() if len(g) >= MIN_MOOD_TRACKS}
