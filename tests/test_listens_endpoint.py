"""``users.listens``: what insight recorded for a user, on the bus and over HTTP."""

from __future__ import annotations

from typing import Any

import msgpack
import nats

from insight.bus import subjects
from insight.codec import Format
from tests.busutil import drained


def report(uri: str, seconds: int, *, playing: bool, full: bool, ts: float) -> bytes:
    data = {
        "uri": uri,
        "media_type": "track",
        "duration": 200,
        "seconds_played": seconds,
        "fully_played": full,
        "is_playing": playing,
        "userid": "ann",
    }
    return msgpack.packb(
        {"event": "media_item_played", "object_id": uri, "data": data, "timestamp": ts}
    )


async def test_listens_plays_skips_favorites_and_the_open_listen(running: Any) -> None:
    nc = await nats.connect(running.stack.nats_url, **running.stack.client_options())
    js = nc.jetstream()
    try:
        t0 = 1_700_000_000
        for body in (
            report("library://track/1", 60, playing=True, full=False, ts=t0 + 60),
            report("library://track/1", 80, playing=False, full=False, ts=t0 + 80),  # pause
            report("library://track/1", 80, playing=True, full=False, ts=t0 + 200),  # resume
            report("library://track/1", 199, playing=False, full=True, ts=t0 + 320),  # ended
            report("library://track/2", 10, playing=False, full=False, ts=t0 + 330),  # skipped
            report("library://track/3", 40, playing=True, full=False, ts=t0 + 370),  # playing
        ):
            await js.publish(subjects.PLAYED, body)
        fav = {"user_id": "ann", "track_id": "library://track/3", "timestamp": t0}
        await js.publish(subjects.FAVORITE, msgpack.packb(fav))
        await drained(js, subjects.playback_consumer(running.app.instance_id))
    finally:
        await nc.drain()

    expected = {
        "user_id": "ann",
        "plays": [
            {
                "track_id": "library://track/2",
                "started_at": t0 + 320,
                "seconds_played": 10.0,
                "duration": 200.0,
                "fully_played": False,
                "skipped": True,
            },
            {
                "track_id": "library://track/1",
                "started_at": t0,
                "seconds_played": 199.0,
                "duration": 200.0,
                "fully_played": True,
                "skipped": False,
            },
        ],
        "play_count": 1,
        "skip_count": 1,
        "favorites": ["library://track/3"],
        "listening": {
            "track_id": "library://track/3",
            "started_at": t0 + 330,
            "position": 40.0,
            "playing": True,
        },
    }
    status, body = await running.api.call("GET", "/users/ann/listens", fmt=Format.JSON)
    assert status == 200 and body == expected
    assert await running.bus.call("insight.v1.users.listens", {"user_id": "ann"}) == expected
    status, body = await running.api.call("GET", f"/users/ann/listens?since={t0 + 1}&limit=5")
    assert status == 200 and [p["track_id"] for p in body["plays"]] == ["library://track/2"]
    status, body = await running.api.call("GET", "/users/nobody/listens")
    assert status == 200 and body["plays"] == [] and body["listening"] is None
    status, body = await running.api.call("GET", "/users/ann/listens?limit=0")
    assert status == 400 and "limit" in str(body)
