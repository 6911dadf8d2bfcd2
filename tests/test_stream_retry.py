"""Retrying stream frames is safe: a client that sends the byte offset (``?offset=`` over HTTP,
``offset`` on the bus) never gets audio stored twice, and a publish whose ack was lost is
answered as a duplicate by JetStream instead of being stored again."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Running

from insight.bus import subjects
from tests.test_http_stream import buffered, frames, pcm_f32, stack, start

__all__ = ["stack"]  # the module-scoped HTTP stack of test_http_stream, one per module
RATE = 48_000


async def frames_at(r: Running, sid: str, data: bytes, offset: object) -> tuple[int, object]:
    return await r.api.call(
        "POST",
        f"/stream/{sid}/frames?offset={offset}",
        raw=data,
        headers={"Content-Type": "application/octet-stream"},
    )


async def audio_messages(r: Running, sid: str) -> int:
    """How many messages the audio stream holds for one session."""
    js = r.bus.nc.jetstream()
    subject = subjects.audio_subject(sid)
    info = await js.stream_info(subjects.AUDIO_STREAM, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def embedding(r: Running, track_id: str) -> np.ndarray:
    status, track = await r.api.call("GET", f"/tracks/{track_id}?include_audio=true")
    assert status == 200, track
    return np.asarray(track["audio_embedding"], np.float64)


async def test_a_retried_body_is_stored_once_and_the_vector_is_unchanged(stack: Running) -> None:
    audio = pcm_f32(1024 * 1024 / 4 / RATE, seed=7)  # 1 MiB: split over several bus messages
    half = len(audio) // 2
    sid = await start(stack, "retry/offsets")
    status, reply = await frames_at(stack, sid, audio[:half], 0)
    assert status == 200, reply
    for _ in range(2):  # the reply was lost: the client sends the same body again
        status, again = await frames_at(stack, sid, audio[:half], 0)
        assert status == 200, again
        assert again["buffered_seconds"] == pytest.approx(half / 4 / RATE)
    # a client that lost track resends everything from 0: only the unseen tail is stored
    status, whole = await frames_at(stack, sid, audio, 0)
    assert status == 200, whole
    assert whole["buffered_seconds"] == pytest.approx(len(audio) / 4 / RATE)
    status, ended = await stack.api.call("POST", f"/stream/{sid}/end", {"min_duration_s": 1})
    assert status == 200 and ended["duration_s"] == pytest.approx(len(audio) / 4 / RATE)
    plain = await start(stack, "retry/plain")
    assert (await frames(stack, plain, audio))[0] == 200
    status, ended_plain = await stack.api.call(
        "POST", f"/stream/{plain}/end", {"min_duration_s": 1}
    )
    assert ended_plain["windows_processed"] == ended["windows_processed"] == 6
    a, b = await embedding(stack, "retry%2Foffsets"), await embedding(stack, "retry%2Fplain")
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.99999


async def test_a_body_refused_late_is_resent_whole_and_only_the_rest_is_stored(
    stack: Running,
) -> None:
    """NaN in a later chunk: part of the body was stored; the client fixes the body and sends
    all of it again at offset 0, and the session ends up with each byte once."""
    sid = await start(stack, "retry/late-nan")
    good = pcm_f32(1.5 * 1024 * 1024 / 4 / RATE, seed=4)
    bad = bytearray(good)
    bad[-4:] = np.array([np.nan], "<f4").tobytes()
    status, err = await frames_at(stack, sid, bytes(bad), 0)
    assert status == 400 and "NaN" in err["error"]["message"]  # type: ignore[index]
    accepted = await buffered(stack, sid)
    assert 0 < accepted < len(good) / 4 / RATE
    status, reply = await frames_at(stack, sid, good, 0)
    assert status == 200, reply
    assert await buffered(stack, sid) == pytest.approx(len(good) / 4 / RATE)


async def test_a_gap_or_a_bad_offset_is_refused_and_stores_nothing(stack: Running) -> None:
    sid = await start(stack, "retry/gap")
    piece = pcm_f32(0.5, seed=1)
    assert (await frames_at(stack, sid, piece, 0))[0] == 200
    status, err = await frames_at(stack, sid, piece, 2 * len(piece))
    assert status == 409, err
    assert f"resend from offset {len(piece)}" in err["error"]["message"]  # type: ignore[index]
    status, err = await frames_at(stack, sid, piece, 2)  # not a whole f32 frame
    assert status == 400 and "whole number of 4-byte frames" in err["error"]["message"]  # type: ignore[index]
    for junk in ("-4", "1e3", "abc", "9" * 20, "٣"):
        status, err = await frames_at(stack, sid, piece, junk)
        assert status == 400 and "offset" in err["error"]["message"], (junk, err)  # type: ignore[index]
    assert await buffered(stack, sid) == pytest.approx(0.5)
    assert await audio_messages(stack, sid) == 1


async def test_a_publish_whose_ack_was_lost_is_not_stored_twice(stack: Running) -> None:
    """The first copy reached the stream but its ack never reached the worker; the frames
    request is retried and JetStream answers "duplicate" instead of storing it again."""
    sid = await start(stack, "retry/lost-ack")
    piece = pcm_f32(1.0, seed=2)  # one bus message
    js = stack.bus.nc.jetstream()
    first = await js.publish(
        subjects.audio_subject(sid), piece, headers={"Nats-Msg-Id": f"{sid}:0"}
    )
    status, reply = await frames(stack, sid, piece)  # no offset: the msg id alone dedups
    assert status == 200 and reply["buffered_seconds"] == pytest.approx(1.0)
    assert await audio_messages(stack, sid) == 1
    status, again = await frames(stack, sid, piece)  # a new body, stored after the first
    assert status == 200 and again["buffered_seconds"] == pytest.approx(2.0)
    assert await audio_messages(stack, sid) == 2
    status, ended = await stack.api.call("POST", f"/stream/{sid}/end", {"min_duration_s": 1})
    assert status == 200 and ended["duration_s"] == pytest.approx(2.0)
    assert ended["windows_processed"] == 2  # 1 s windows over 2 s, not 3
    assert first.seq > 0


@pytest.mark.parametrize(
    ("case", "stored_s", "sent_s", "held_s", "messages"),
    [
        ("retry of more", 0.5, 1.0, 1.0, 2),  # the stored half once, then the new half
        ("retry of less", 1.0, 0.5, 1.0, 1),  # a bridge that splits smaller: nothing new
        ("another body", 0.5, 0.5, 1.0, 2),  # the lost body stays, the new one follows it
    ],
)
async def test_a_lost_ack_and_a_body_of_another_size_store_each_byte_once(
    stack: Running, case: str, stored_s: float, sent_s: float, held_s: float, messages: int
) -> None:
    """The stream holds a body whose ack was lost; the next body at that offset is a retry of
    more or of less of the same audio, or a different body: the session counts what the
    stream holds, each byte once, and never drops audio."""
    sid = await start(stack, f"retry/sizes-{case.replace(' ', '-')}")
    audio = pcm_f32(1.0, seed=9)
    stored = audio[: int(stored_s * RATE) * 4]
    sent = pcm_f32(sent_s, seed=10) if case == "another body" else audio[: int(sent_s * RATE) * 4]
    js = stack.bus.nc.jetstream()
    await js.publish(subjects.audio_subject(sid), stored, headers={"Nats-Msg-Id": f"{sid}:0"})
    status, reply = await frames(stack, sid, sent)
    assert status == 200, reply
    assert reply["buffered_seconds"] == pytest.approx(held_s)
    assert await audio_messages(stack, sid) == messages
    last = (await js.get_last_msg(subjects.AUDIO_STREAM, subjects.audio_subject(sid))).data
    newest = {"retry of more": audio[len(stored) :], "retry of less": stored, "another body": sent}
    assert last == newest[case]
