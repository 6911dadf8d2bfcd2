"""HTTP bridge, stream/*: start, frames, end, status, abort; frames splitting; every error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight.codec import Format

J = Format.JSON
M = Format.MSGPACK
FORMATS = [M, J]
RATE = 48_000
OCTET = {"Content-Type": "application/octet-stream"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    """1 s windows, and a bus max payload of 0.25 MiB so that big frames bodies are split."""
    settings = make_settings(
        tmp_path_factory.mktemp("stream") / "d",
        tiny_model_dir,
        audio={"window_size_s": 1.0, "hop_size_s": 1.0},
        nats={"max_payload_mb": 0.25},
        server={"max_body_mb": 2.0},
        stream={"max_buffered_s": 30.0},
    )
    r = await start_running(settings)
    yield r
    await stop_running(r)


def pcm_f32(seconds: float, seed: int = 0) -> bytes:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = 0.3 * np.sin(2 * np.pi * (220 + 50 * seed) * t)
    x += np.random.default_rng(seed).standard_normal(n) * 0.05
    return x.astype("<f4").tobytes()


def cos(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def start_body(track_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "metadata": {"name": f"Name of {track_id}", "artists": ["Streamer"]},
        "format": "pcm_f32_le",
        "sample_rate": RATE,
        "channels": 1,
        **kw,
    }


async def start(r: Running, track_id: str, fmt: Format = M, **kw: Any) -> str:
    status, reply = await r.api.call("POST", "/stream/start", start_body(track_id, **kw), fmt=fmt)
    assert status == 200, reply
    return str(reply["session_id"])


async def frames(r: Running, sid: str, data: bytes, fmt: Format = M) -> tuple[int, Any]:
    return await r.api.call("POST", f"/stream/{sid}/frames", raw=data, headers=OCTET, fmt=fmt)


# --- the happy path, both formats --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_full_session(stack: Running, fmt: Format) -> None:
    tid = f"stream/full/{fmt}"
    status, reply = await stack.api.call("POST", "/stream/start", start_body(tid), fmt=fmt)
    assert status == 200
    sid = reply["session_id"]
    assert str(uuid.UUID(sid)) == sid
    assert reply["window_samples"] == RATE  # 1 s windows
    audio = pcm_f32(3.5, seed=1)
    for i in range(0, len(audio), 4 * RATE // 2):  # 0.5 s posts
        status, fr = await frames(stack, sid, audio[i : i + 4 * RATE // 2], fmt)
        assert status == 200, fr
    assert fr["buffered_seconds"] == pytest.approx(3.5)
    assert 0 <= fr["windows_completed"] <= 3
    status, st = await stack.api.call("GET", f"/stream/{sid}/status", fmt=fmt)
    assert status == 200
    assert st["session_id"] == sid and st["track_id"] == tid and st["status"] == "active"
    assert st["buffered_seconds"] == pytest.approx(3.5)
    status, end = await stack.api.call(
        "POST", f"/stream/{sid}/end", {"min_duration_s": 1.0}, fmt=fmt
    )
    assert status == 200, end
    assert end["track_id"] == tid
    assert end["duration_s"] == pytest.approx(3.5)
    assert end["windows_processed"] == 4  # 3 full windows and the repeat-padded tail
    assert end["text_stored"] is True and end["audio_stored"] is True
    status, st = await stack.api.call("GET", f"/stream/{sid}/status", fmt=fmt)
    assert status == 200 and st["status"] == "completed"
    # the track is stored: its audio vector is the embed/audio answer for the same PCM
    status, got = await stack.api.call(
        "GET", "/tracks/" + quote(tid, safe="") + "?include_audio=true", fmt=fmt
    )
    assert status == 200 and got["has_audio"] and got["has_text"]
    assert got["metadata"]["name"] == f"Name of {tid}"
    assert abs(np.linalg.norm(got["audio_embedding"]) - 1) < 1e-4


async def test_end_with_empty_body_and_store_false(stack: Running) -> None:
    sid = await start(stack, "stream/nostore")
    await frames(stack, sid, pcm_f32(1.0))
    status, end = await stack.api.call("POST", f"/stream/{sid}/end", {"store": False})
    assert status == 200
    assert end["text_stored"] is False and end["audio_stored"] is False
    assert (await stack.api.call("GET", "/tracks/stream%2Fnostore"))[0] == 404
    # end with no body at all: defaults (store, min 3 s): 2 s of audio gives no audio vector
    sid = await start(stack, "stream/short")
    await frames(stack, sid, pcm_f32(2.0))
    status, end = await stack.api.call("POST", f"/stream/{sid}/end", raw=b"")
    assert status == 200, end
    assert end["duration_s"] == pytest.approx(2.0)
    assert end["audio_stored"] is False and end["windows_processed"] == 0
    assert end["text_stored"] is True


@pytest.mark.parametrize("fmt", FORMATS)
async def test_abort(stack: Running, fmt: Format) -> None:
    sid = await start(stack, f"stream/abort/{fmt}", fmt)
    await frames(stack, sid, pcm_f32(0.5))
    status, body = await stack.api.call("DELETE", f"/stream/{sid}", fmt=fmt)
    assert status == 204 and body is None
    status, st = await stack.api.call("GET", f"/stream/{sid}/status", fmt=fmt)
    assert status == 200 and st["status"] == "aborted"
    status, err = await frames(stack, sid, pcm_f32(0.5), fmt)
    assert status == 409 and err["error"]["code"] == "CONFLICT"
    assert "aborted" in err["error"]["message"]


# --- frames splitting ----------------------------------------------------------------------


async def test_big_frames_body_is_split_and_equals_small_posts(stack: Running) -> None:
    max_payload = stack.bus.nc.max_payload
    assert max_payload <= 256 * 1024
    audio = pcm_f32(1024 * 1024 / 4 / RATE, seed=5)  # 1 MiB of f32 mono, ~5.46 s
    assert len(audio) == 1024 * 1024 >= 4 * max_payload
    one = await start(stack, "split/one")
    status, big = await frames(stack, one, audio)
    assert status == 200, big
    many = await start(stack, "split/many")
    step = 64 * 1024
    for i in range(0, len(audio), step):
        status, small = await frames(stack, many, audio[i : i + step])
        assert status == 200
    assert big["buffered_seconds"] == pytest.approx(small["buffered_seconds"])
    assert big["buffered_seconds"] == pytest.approx(len(audio) / 4 / RATE)
    _, s1 = await stack.api.call("GET", f"/stream/{one}/status")
    _, s2 = await stack.api.call("GET", f"/stream/{many}/status")
    assert s1["buffered_seconds"] == pytest.approx(s2["buffered_seconds"])
    _, e1 = await stack.api.call("POST", f"/stream/{one}/end", {"min_duration_s": 1})
    _, e2 = await stack.api.call("POST", f"/stream/{many}/end", {"min_duration_s": 1})
    assert e1["windows_processed"] == e2["windows_processed"] == 6  # 5 full + the tail
    assert e1["duration_s"] == pytest.approx(e2["duration_s"])
    _, t1 = await stack.api.call("GET", "/tracks/split%2Fone?include_audio=true")
    _, t2 = await stack.api.call("GET", "/tracks/split%2Fmany?include_audio=true")
    assert cos(t1["audio_embedding"], t2["audio_embedding"]) > 0.9999


async def buffered(r: Running, sid: str) -> float:
    status, st = await r.api.call("GET", f"/stream/{sid}/status")
    assert status == 200, st
    return float(st["buffered_seconds"])


async def test_split_body_is_refused_whole_before_any_chunk_is_stored(stack: Running) -> None:
    """A body split over several bus messages is checked whole on its first chunk: a size
    that is no whole number of frames, or one over the session's buffer, stores nothing."""
    sid = await start(stack, "split/refused")
    audio = pcm_f32(1.5 * 1024 * 1024 / 4 / RATE, seed=2)  # 1.5 MiB: 6+ bus messages
    status, err = await frames(stack, sid, audio + b"\x00\x00")
    assert status == 400 and "1572866 bytes is not a whole number" in err["error"]["message"]
    assert await buffered(stack, sid) == 0.0
    for _ in range(3):  # 3 × 8.2 s
        status, _ = await frames(stack, sid, audio)
        assert status == 200
    before = await buffered(stack, sid)
    status, err = await frames(stack, sid, audio)  # would pass max_buffered_s = 30
    assert status == 413 and "INSIGHT_STREAM__MAX_BUFFERED_S" in err["error"]["message"]
    assert await buffered(stack, sid) == before == pytest.approx(3 * len(audio) / 4 / RATE)


async def test_split_body_failing_late_says_what_was_accepted(stack: Running) -> None:
    """NaN samples in a later chunk are found only there: the error says how many bytes of the
    body were stored, so the client can resend the rest."""
    sid = await start(stack, "split/late-nan")
    audio = bytearray(pcm_f32(1.5 * 1024 * 1024 / 4 / RATE, seed=3))
    audio[-4:] = np.array([np.nan], "<f4").tobytes()
    status, err = await frames(stack, sid, bytes(audio))
    assert status == 400 and "NaN" in err["error"]["message"]
    accepted = int(err["error"]["message"].split("the first ")[1].split(" bytes")[0])
    assert 0 < accepted < len(audio) and accepted % 4 == 0
    assert await buffered(stack, sid) == pytest.approx(accepted / 4 / RATE)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_start_conflict_and_replace(stack: Running, fmt: Format) -> None:
    tid = f"stream/conflict/{fmt}"
    first = await start(stack, tid, fmt)
    status, err = await stack.api.call(
        "POST", "/stream/start", start_body(tid, replace_existing=False), fmt=fmt
    )
    assert status == 409
    assert err == {
        "error": {"code": "CONFLICT", "message": f"Session already exists for track: {tid}"}
    }
    second = await start(stack, tid, fmt)  # replace_existing defaults to true
    assert second != first
    _, st = await stack.api.call("GET", f"/stream/{first}/status", fmt=fmt)
    assert st["status"] == "aborted"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_frames_after_end_409(stack: Running, fmt: Format) -> None:
    sid = await start(stack, f"stream/after-end/{fmt}", fmt)
    await frames(stack, sid, pcm_f32(0.25))
    status, _ = await stack.api.call("POST", f"/stream/{sid}/end", {"store": False}, fmt=fmt)
    assert status == 200
    status, err = await frames(stack, sid, pcm_f32(0.25), fmt)
    assert status == 409
    assert err["error"]["code"] == "CONFLICT" and "completed" in err["error"]["message"]
    status, err = await stack.api.call("POST", f"/stream/{sid}/end", {}, fmt=fmt)
    assert status == 409


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unknown_session_404(stack: Running, fmt: Format) -> None:
    sid = str(uuid.uuid4())
    for method, path, kw in [
        ("POST", f"/stream/{sid}/frames", {"raw": pcm_f32(0.1), "headers": OCTET}),
        ("POST", f"/stream/{sid}/end", {"body": {}}),
        ("GET", f"/stream/{sid}/status", {}),
        ("DELETE", f"/stream/{sid}", {}),
    ]:
        status, err = await stack.api.call(method, path, fmt=fmt, **kw)  # type: ignore[arg-type]
        assert status == 404, (path, err)
        assert err == {"error": {"code": "NOT_FOUND", "message": f"Session {sid} not found"}}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_bad_session_id_400(stack: Running, fmt: Format) -> None:
    for sid in ["not-a-uuid", "%2E%2E%2Fetc", "x" * 129]:
        status, err = await stack.api.call("GET", f"/stream/{sid}/status", fmt=fmt)
        assert status == 400, (sid, err)
        assert err["error"]["code"] == "BAD_REQUEST"
        assert "session" in err["error"]["message"].lower()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"format": "pcm_u8"}, "format"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"channels": 6}, "channels"),
        ({"metadata": None}, "metadata"),
        ({"track_id": ""}, "track_id"),
    ],
)
async def test_start_bad_input(
    stack: Running, fmt: Format, patch: dict[str, Any], needle: str
) -> None:
    body = {**start_body("stream/bad"), **patch}
    status, err = await stack.api.call("POST", "/stream/start", body, fmt=fmt)
    assert status == 400
    assert err["error"]["code"] == "BAD_REQUEST" and needle in err["error"]["message"]


async def test_frames_bad_pcm_400(stack: Running) -> None:
    sid = await start(stack, "stream/badpcm")
    status, err = await frames(stack, sid, b"\x00" * 7, J)
    assert status == 400
    assert "whole number of 4-byte frames" in err["error"]["message"]
    status, err = await frames(stack, sid, np.full(100, np.inf, "<f4").tobytes(), J)
    assert status == 400 and err["error"]["code"] == "BAD_REQUEST"
    # the session is still usable and holds nothing of the bad posts
    status, ok = await frames(stack, sid, pcm_f32(0.5))
    assert status == 200 and ok["buffered_seconds"] == pytest.approx(0.5)


async def test_frames_wrong_content_type_415(stack: Running) -> None:
    sid = await start(stack, "stream/ctype")
    for ctype in ("application/json", "application/msgpack", "text/plain"):
        status, err = await stack.api.call(
            "POST",
            f"/stream/{sid}/frames",
            raw=pcm_f32(0.1),
            headers={"Content-Type": ctype},
            fmt=J,
        )
        assert status == 415, ctype
        assert err["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "application/octet-stream" in err["error"]["message"]
    _, st = await stack.api.call("GET", f"/stream/{sid}/status")
    assert st["buffered_seconds"] == 0


async def test_frames_over_body_limit_413(stack: Running) -> None:
    sid = await start(stack, "stream/too-big")
    status, err = await frames(stack, sid, b"\x00" * (2 * 1024 * 1024 + 4), J)
    assert status == 413
    assert err["error"]["code"] == "PAYLOAD_TOO_LARGE" and "2.0 MiB" in err["error"]["message"]
    _, st = await stack.api.call("GET", f"/stream/{sid}/status")
    assert st["buffered_seconds"] == 0 and st["status"] == "active"


async def test_start_503_without_model(running_no_model: Running) -> None:
    for fmt in FORMATS:
        status, err = await running_no_model.api.call(
            "POST", "/stream/start", start_body("nm"), fmt=fmt
        )
        assert status == 503
        assert err["error"]["code"] == "MODEL_NOT_LOADED"
        assert "INSIGHT_MODEL__PATH" in err["error"]["message"]


async def test_status_age_is_not_negative(stack: Running) -> None:
    sid = await start(stack, "stream/age")
    _, st = await stack.api.call("GET", f"/stream/{sid}/status")
    assert 0 <= st["age_seconds"] < 5
