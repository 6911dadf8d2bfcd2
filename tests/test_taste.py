"""Taste profiles: weights, decay, both interaction forms, and the profile endpoints."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from synthetic_library import Library, build, history_service, store_library

from insight.codec import Format
from insight.errors import BadRequest
from insight.schemas import UserInteraction
from insight.taste.profile import (
    base_weight,
    build_profile,
    confidence,
    decay,
    interaction_weight,
    mood_groups,
    track_weights,
)

NOW = int(time.time())
DAY = 86_400
FORMATS = [Format.JSON, Format.MSGPACK]


def ix(**kw: Any) -> UserInteraction:
    return UserInteraction(track_id=kw.pop("track_id", "t"), **kw)


@pytest.fixture(scope="module")
def lib() -> Library:
    return build()


# --- pure ------------------------------------------------------------------------------------


def test_decay_half_life() -> None:
    assert decay(0, 14) == 1.0
    assert decay(14, 14) == pytest.approx(0.5)
    assert decay(28, 14) == pytest.approx(0.25)
    assert decay(-3, 14) == 1.0  # future timestamps count as now


def test_weights_both_forms() -> None:
    play = base_weight(ix(play_count=1))
    assert play == pytest.approx(1.0)
    assert base_weight(ix(play_count=1, is_favorite=True)) == pytest.approx(3.0)
    assert base_weight(ix(play_count=3)) == pytest.approx(2.0)  # diminishing returns
    assert base_weight(ix(skip_count=1)) < 0
    # the original's events and completion bonus
    assert base_weight(ix(signal_type="full_play", seconds_played=200, duration=200)) == 1.5
    assert base_weight(ix(signal_type="partial_play", seconds_played=50, duration=200)) == 0.7
    assert base_weight(ix(signal_type="dislike")) == -1.0
    assert base_weight(ix(signal_type="favorite")) == 2.0


def test_cutoff_and_net_per_track() -> None:
    old = NOW - 30 * DAY
    assert interaction_weight(ix(play_count=2, last_played=old), NOW, 14, 21) is None
    kept = interaction_weight(ix(play_count=1, is_favorite=True, last_played=old), NOW, 14, 21)
    assert kept is not None and kept > 0
    w = track_weights(
        [ix(track_id="x", signal_type="full_play", timestamp=NOW)] * 5
        + [ix(track_id="x", signal_type="skip", timestamp=NOW)],
        NOW,
        14,
        21,
    )
    assert w["x"] > 0  # a track played five times and skipped once is liked


def test_build_profile_taste_and_distaste(lib: Library) -> None:
    a, b = lib.ids("A")[:6], lib.ids("B")[:6]
    weights = {**{t: 1.0 for t in a}, **{t: -1.0 for t in b}}
    tv = build_profile(weights, lib.vectors)
    assert float(tv.taste @ lib.centres["A"]) > 0.8
    assert tv.distaste is not None and float(tv.distaste @ lib.centres["B"]) > 0.8
    assert float(tv.taste @ lib.centres["B"]) < 0  # the original's 30 % subtraction
    assert tv.track_count == 6 and tv.disliked_count == 6
    assert tv.confidence == pytest.approx(confidence(6)) == pytest.approx(6 / 26)
    assert np.linalg.norm(tv.taste) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(BadRequest, match="no positive signals"):
        build_profile({t: -1.0 for t in b}, lib.vectors)


def test_mood_groups_need_two_tracks() -> None:
    groups = mood_groups({"a": 1.0, "b": 1.0, "c": 1.0, "d": -1.0}, {"a": "x", "b": "x", "c": "y"})
    assert set(groups) == {"x"} and groups["x"] == {"a": 1.0, "b": 1.0, "d": -1.0}


# --- endpoints ---------------------------------------------------------------------------------


async def setup(running: Any, lib: Library) -> None:
    await store_library(running.app, lib)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_compute_aggregate_form(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    a, c = lib.ids("A")[:5], lib.ids("C")[:3]
    interactions = [
        {
            "track_id": t,
            "play_count": 2,
            "skip_count": 0,
            "is_favorite": False,
            "last_played": NOW - DAY,
        }
        for t in a + c
    ] + [{"track_id": "nowhere", "play_count": 1, "last_played": NOW}]
    status, body = await running.api.call(
        "POST", "/users/alice/profile/compute", {"interactions": interactions}, fmt=fmt
    )
    assert status == 200, body
    assert body["user_id"] == "alice"
    assert body["missing_tracks"] == ["nowhere"]
    by_kind = {p["profile_type"]: p for p in body["profiles"]}
    assert set(by_kind) == {"global", "mood:energetic", "mood:peaceful"}
    assert by_kind["global"]["track_count"] == 8
    assert by_kind["global"]["confidence"] == pytest.approx(8 / 28, rel=1e-5)
    assert by_kind["mood:energetic"]["track_count"] == 5
    assert abs(by_kind["global"]["updated_at"] - time.time()) < 60

    status, vec = await running.api.call(
        "GET", "/users/alice/profile/vector?profile_type=mood:peaceful", fmt=fmt
    )
    assert status == 200, vec
    prof = vec["profile"]
    assert prof["profile_type"] == "mood:peaceful" and prof["track_count"] == 3
    emb = np.array(prof["embedding"], dtype=np.float32)
    assert emb.shape == (512,) and float(emb @ lib.centres["C"]) > 0.8


async def test_compute_event_form_and_distaste(running: Any, lib: Library) -> None:
    await setup(running, lib)
    a, b = lib.ids("A")[:4], lib.ids("B")[:4]
    events = [
        {
            "track_id": t,
            "timestamp": NOW - DAY,
            "signal_type": "full_play",
            "seconds_played": 240.0,
            "duration": 240.0,
        }
        for t in a
    ] + [
        {
            "track_id": t,
            "timestamp": NOW - DAY,
            "signal_type": "skip",
            "seconds_played": 5.0,
            "duration": 240.0,
        }
        for t in b
    ]
    status, body = await running.api.call(
        "POST", "/users/bob/profile/compute", {"interactions": events, "profile_type": "global"}
    )
    assert status == 200, body
    assert [p["profile_type"] for p in body["profiles"]] == ["global"]
    status, vec = await running.api.call(
        "GET", "/users/bob/profile/vector?profile_type=distaste", fmt=Format.JSON
    )
    assert status == 200
    assert float(np.array(vec["profile"]["embedding"]) @ lib.centres["B"]) > 0.8


async def test_compute_from_history(running: Any, lib: Library, tmp_path: Any) -> None:
    await setup(running, lib)
    async with history_service(running.app, tmp_path / "h.db") as history:
        for i, t in enumerate(lib.ids("C")[:4]):
            await history.record_play("carol", t, 200, 200, True, timestamp=NOW - 3600 - i)
        await history.record_play("carol", lib.ids("B")[0], 3, 200, False, timestamp=NOW - 60)
        assert await history.is_stale("carol")
        status, body = await running.api.call("POST", "/users/carol/profile/compute")
        assert status == 200, body
        glob = next(p for p in body["profiles"] if p["profile_type"] == "global")
        assert glob["track_count"] == 4
        assert not await history.is_stale("carol")
        status, err = await running.api.call("POST", "/users/nobody/profile/compute")
        assert status == 404 and "interactions" in err["error"]["message"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_compute_errors(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    path = "/users/eve/profile/compute"

    async def err(body: Any) -> tuple[int, str]:
        status, reply = await running.api.call("POST", path, body, fmt=fmt)
        return status, reply["error"]["message"]

    status, msg = await err({"interactions": []})
    assert status == 400 and "empty" in msg
    status, msg = await err({"interactions": [{"track_id": "x"}]})
    assert status == 400 and "signal_type" in msg
    status, msg = await err({"interactions": [{"track_id": "x", "play_count": 1}]})
    assert status == 400 and "embedding" in msg
    skipped = [{"track_id": t, "skip_count": 2, "last_played": NOW} for t in lib.ids("B")[:3]]
    status, msg = await err({"interactions": skipped})
    assert status == 400 and "positive" in msg
    old = [{"track_id": lib.ids("A")[0], "play_count": 1, "last_played": NOW - 90 * DAY}]
    status, msg = await err({"interactions": old})
    assert status == 400 and "21 days" in msg
    status, body = await running.api.call("POST", path, {"interactions": old, "cutoff_days": 365})
    assert status == 200, body
    status, msg = await err({"interactions": old, "profile_type": "context"})
    assert status == 400
    status, msg = await err({"interactions": old, "cutoff_days": 365, "profile_type": "mood:sad"})
    assert status == 400 and "sad" in msg


@pytest.mark.parametrize("fmt", FORMATS)
async def test_vector_and_delete(running: Any, lib: Library, fmt: Format) -> None:
    await setup(running, lib)
    plays = [{"track_id": t, "play_count": 1, "last_played": NOW} for t in lib.ids("A")[:4]]
    plays += [{"track_id": t, "skip_count": 3, "last_played": NOW} for t in lib.ids("B")[:2]]
    status, _ = await running.api.call(
        "POST", "/users/dan/profile/compute", {"interactions": plays}, fmt=fmt
    )
    assert status == 200
    status, vec = await running.api.call("GET", "/users/dan/profile/vector", fmt=fmt)
    assert status == 200 and vec["profile"]["user_id"] == "dan"
    assert vec["profile"]["profile_type"] == "global" and vec["profile"]["track_count"] == 4
    status, err = await running.api.call("GET", "/users/ghost/profile/vector", fmt=fmt)
    assert status == 404 and "ghost" in err["error"]["message"]
    status, err = await running.api.call(
        "GET", "/users/dan/profile/vector?profile_type=mood", fmt=fmt
    )
    assert status == 400
    status, err = await running.api.call(
        "GET", "/users/dan/profile/vector?profile_type=bogus", fmt=fmt
    )
    assert status == 400

    # delete one (body), then again: nothing left to delete
    status, r = await running.api.call(
        "DELETE", "/users/dan/profile", {"profile_type": "mood:energetic"}, fmt=fmt
    )
    assert status == 200 and r["deleted"] is True and "mood:energetic" in r["message"]
    status, r = await running.api.call(
        "DELETE", "/users/dan/profile?profile_type=mood:energetic", fmt=fmt
    )
    assert status == 200 and r["deleted"] is False
    # global (default, no body) takes the distaste with it
    status, r = await running.api.call("DELETE", "/users/dan/profile", fmt=fmt)
    assert status == 200 and r["deleted"] is True
    for kind in ("global", "distaste"):
        status, _ = await running.api.call(
            "GET", f"/users/dan/profile/vector?profile_type={kind}", fmt=fmt
        )
        assert status == 404
    # delete all
    await running.api.call("POST", "/users/dan/profile/compute", {"interactions": plays})
    status, r = await running.api.call("DELETE", "/users/dan/profiles", fmt=fmt)
    assert status == 200 and r["deleted"] is True and "(3)" in r["message"]
    status, r = await running.api.call("DELETE", "/users/dan/profiles", fmt=fmt)
    assert status == 200 and r["deleted"] is False
    status, _ = await running.api.call("POST", "/users/dan/recommend", {}, fmt=fmt)
    assert status == 404


async def test_profiles_need_no_model(running_no_model: Any) -> None:
    # storage is up without a model: profiles need no model (unknown user: 404, not 503)
    status, _ = await running_no_model.api.call("POST", "/users/x/recommend", {})
    assert status == 404
