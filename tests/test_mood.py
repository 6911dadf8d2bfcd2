"""Mood: the classifier on a known prompt bank, the cached service, and the endpoints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from insight.codec import Format
from insight.errors import BadRequest
from insight.mood.classifier import PromptBank, classify
from insight.mood.labels import mood_labels
from insight.schemas import MoodTier
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point

FORMATS = [Format.JSON, Format.MSGPACK]
LABELS = mood_labels()


@pytest.fixture(scope="module")
def bank() -> PromptBank:
    """Orthonormal prompts: every mood and axis its own direction."""
    basis, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((64, 30)))
    return PromptBank.build("synthetic", basis.T[:26], basis.T[26:])


def test_labels() -> None:
    assert len(LABELS) == 26
    assert [m.id for m in LABELS[:4]] == ["energetic", "aggressive", "peaceful", "melancholic"]
    assert LABELS[0].prompt.startswith("energetic exciting upbeat powerful music")


def test_prompt_vector_classifies_as_its_mood(bank: PromptBank) -> None:
    tiers = [MoodTier.PRIMARY, MoodTier.REFINED, MoodTier.CONTEXTUAL]
    for i, label in enumerate(LABELS):
        c = classify(bank, bank.moods[i], tiers, top_k=3)
        assert c.details[0].mood == label.id
        assert c.moods[0] == label.id
        assert c.mood_scores[label.id] == max(c.mood_scores.values())
        if label.tier == MoodTier.PRIMARY:
            assert c.primary_mood == label.id
        assert c.primary_mood in {m.id for m in LABELS if m.tier == MoodTier.PRIMARY}


def test_softmax_per_tier_and_top_k(bank: PromptBank) -> None:
    v = bank.moods[0] + 0.5 * bank.moods[1]
    c = classify(bank, v, [MoodTier.PRIMARY], top_k=4)
    assert [d.mood for d in c.details] == ["energetic", "aggressive", "peaceful", "melancholic"]
    assert sum(d.confidence for d in c.details) == pytest.approx(1.0)
    c = classify(bank, v, top_k=2)  # default tiers: primary + refined, 2 each
    assert len(c.details) == 4 and {d.tier for d in c.details} == {"primary", "refined"}
    assert c.details == sorted(c.details, key=lambda d: -d.confidence)
    c = classify(bank, v, [MoodTier.REFINED], include_va=False)
    assert c.primary_mood is None and c.valence is None and c.arousal is None


def test_valence_arousal_bounded_and_informative(bank: PromptBank) -> None:
    rng = np.random.default_rng(2)
    for v in rng.standard_normal((200, 64)):
        c = classify(bank, v)
        assert c.valence is not None and c.arousal is not None
        assert -1 <= c.valence <= 1 and -1 <= c.arousal <= 1
    # straight on an axis prompt: clamped, never beyond 1
    c = classify(bank, bank.axes[0] * 7)
    assert c.valence == pytest.approx(0.5 + 0.5 * float(_hints_mean(bank, bank.axes[0])[0]))
    # the axis pair says nothing about a vector orthogonal to it (the original gives 0, 0);
    # the mood hints give "sad" a negative valence and "workout" a high arousal
    sad = classify(bank, bank.moods[[m.id for m in LABELS].index("sad")])
    assert sad.valence is not None and sad.valence < -0.3
    workout = classify(bank, bank.moods[[m.id for m in LABELS].index("workout")])
    assert workout.arousal is not None and workout.arousal > 0.3


def _hints_mean(bank: PromptBank, v: np.ndarray) -> np.ndarray:
    s = bank.moods @ v
    p = np.exp((s - s.max()) / 0.1)
    return np.asarray((p / p.sum()) @ bank.hints)


def test_bad_vectors(bank: PromptBank) -> None:
    with pytest.raises(BadRequest, match="64"):
        classify(bank, np.ones(10))
    with pytest.raises(BadRequest, match="zeros"):
        classify(bank, np.zeros(64))


# --- service and endpoints ------------------------------------------------------------------


async def prompt_vector(running: Any, mood_id: str) -> list[float]:
    status, body = await running.api.call(
        "POST", "/embed/text", {"text": next(m.prompt for m in LABELS if m.id == mood_id)}
    )
    assert status == 200, body
    return list(body["embedding"])


@pytest.mark.parametrize("fmt", FORMATS)
async def test_classify_embedding_no_inference(running: Any, fmt: Format) -> None:
    app = running.app
    svc = app.services.mood
    bank = await svc.bank()
    assert bank.model_id == app.pool.model.model_id
    vectors = {m: await prompt_vector(running, m) for m in ("peaceful", "aggressive", "sad")}
    items = app.pool.stats.items
    for mood, vec in vectors.items():
        body = {"embedding": vec, "tiers": ["primary", "refined"], "top_k": 3}
        status, c = await running.api.call("POST", "/mood/classify", body, fmt=fmt)
        assert status == 200, c
        assert c["moods"][0] == mood and c["details"][0]["mood"] == mood
        assert c["source"] == "embedding"
        assert len(c["details"]) == 6
        assert -1 <= c["valence"] <= 1 and -1 <= c["arousal"] <= 1
        if mood != "sad":
            assert c["primary_mood"] == mood
    assert app.pool.stats.items == items  # prompts cached: no text inference per classify
    assert svc.cached is bank


async def test_model_reload_rebuilds_prompts(running: Any) -> None:
    svc = running.app.services.mood
    before = await svc.bank()
    await svc.on_model_loaded(running.app.pool.model)
    assert svc.cached is not before and svc.cached is not None
    assert np.allclose(svc.cached.moods, before.moods, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_classify_track(running: Any, fmt: Format) -> None:
    store = running.app.require_store()
    calm, angry = (
        await prompt_vector(running, "peaceful"),
        await prompt_vector(running, "aggressive"),
    )
    await store.upsert(
        TRACKS_TEXT,
        [
            Point("both", np.array(angry), {"name": "Both"}),
            Point("text-only", np.array(angry), {"name": "T"}),
        ],
    )
    await store.upsert(TRACKS_AUDIO, [Point("both", np.array(calm), {"name": "Both"})])
    status, c = await running.api.call("POST", "/mood/classify", {"track_id": "both"}, fmt=fmt)
    assert status == 200 and c["source"] == "audio" and c["primary_mood"] == "peaceful"
    status, c = await running.api.call(
        "POST", "/mood/classify", {"track_id": "text-only", "include_va": False}, fmt=fmt
    )
    assert status == 200 and c["source"] == "text" and c["primary_mood"] == "aggressive"
    assert c["valence"] is None
    status, err = await running.api.call("POST", "/mood/classify", {"track_id": "nope"}, fmt=fmt)
    assert status == 404 and "nope" in err["error"]["message"]
    status, err = await running.api.call("POST", "/mood/classify", {}, fmt=fmt)
    assert status == 400 and "track_id" in err["error"]["message"]
    status, err = await running.api.call(
        "POST", "/mood/classify", {"embedding": [0.1] * 3}, fmt=fmt
    )
    assert status == 400 and "512" in err["error"]["message"]
    status, err = await running.api.call(
        "POST", "/mood/classify", {"embedding": [0.1] * 512, "tiers": ["loud"]}, fmt=fmt
    )
    assert status == 400


async def test_mood_fields(running: Any) -> None:
    svc = running.app.services.mood
    fields = await svc.mood_fields(np.array(await prompt_vector(running, "peaceful")))
    assert set(fields) == {"primary_mood", "moods", "mood_scores", "valence", "arousal"}
    assert fields["primary_mood"] == "peaceful" and fields["moods"][0] == "peaceful"
    assert await svc.mood_fields(np.ones(7)) == {}


async def test_classify_without_model(running_no_model: Any) -> None:
    status, err = await running_no_model.api.call(
        "POST", "/mood/classify", {"embedding": [0.1] * 512}
    )
    assert status == 503 and "model" in err["error"]["message"].lower()
    assert await running_no_model.app.services.mood.mood_fields(np.ones(512)) == {}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_mood_list(running: Any, fmt: Format) -> None:
    status, body = await running.api.call("GET", "/mood/list", fmt=fmt)
    assert status == 200
    assert len(body["moods"]) == 26
    assert body["counts"] == {"primary": 4, "refined": 14, "contextual": 8}
    sleep = next(m for m in body["moods"] if m["id"] == "sleep")
    assert sleep["valence_hint"] == pytest.approx(0.3)
    assert sleep["arousal_hint"] == pytest.approx(-0.95)
    assert {k: sleep[k] for k in ("id", "name", "tier", "prompt")} == {
        "id": "sleep",
        "name": "Sleep",
        "tier": "contextual",
        "prompt": LABELS[21].prompt,
    }
