"""Listens folded per Music Assistant queue item (insight.ingest.queues, queue_store), the
bridge's queue messages (insight.integrations.ma_queue), and the recorded real-MA sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from real_ma_listens import ADMIN, BOB, fold_trace

from insight.bus import subjects
from insight.history import ListeningHistory
from insight.ingest.listens import Report
from insight.ingest.parse import Poison, parse_playback
from insight.ingest.queues import QueueUpdate
from insight.integrations.ma_queue import QueueTracker

Q = "up001122334455"


class Player:
    """One MA queue as the worker sees it: queue updates and reports, applied in order."""

    def __init__(self, history: ListeningHistory) -> None:
        self.history = history
        self.seq = 0

    async def _apply(self, writer: Any) -> None:
        self.seq += 1
        assert await self.history.apply_event("c", self.seq, writer)

    async def queue(
        self,
        ts: float,
        item: str,
        track: str,
        state: str,
        elapsed: float,
        jump: bool = False,
        duration: float = 20.0,
    ) -> None:
        u = QueueUpdate(Q, item, f"library://track/{track}", state, elapsed, duration, ts, jump)
        await self._apply(ListeningHistory.queue_writer(u))

    async def report(
        self,
        ts: float,
        track: str,
        user: str,
        secs: float,
        full: bool,
        playing: bool,
        duration: float = 20.0,
    ) -> None:
        r = Report(user, f"library://track/{track}", ts, secs, duration, full, playing)
        await self._apply(ListeningHistory.report_writer(r))

    async def plays(self, user: str) -> list[tuple[str, float, bool]]:
        return [
            (p.track_id[-1], p.seconds_played, p.fully_played)
            for p in await self.history.plays(user)
        ]


async def player(tmp_path: Path) -> Player:
    history = ListeningHistory(tmp_path / "h.db")
    await history.open()
    return Player(history)


async def test_two_play_media_of_one_track_are_two_plays(tmp_path: Path) -> None:
    p = await player(tmp_path)
    await p.queue(1000, "q1", "4", "playing", 13)  # stale elapsed of the previous stream
    await p.report(1000, "4", "u", 13, True, True)  # first report: not trusted
    await p.queue(1001, "q1", "4", "playing", 1, jump=True)
    await p.queue(1020, "q1", "4", "idle", 19)
    await p.report(1020, "4", "u", 19, True, False)
    await p.queue(1024, "q2", "4", "idle", 0)  # play_media again: a new queue item
    await p.queue(1025, "q2", "4", "playing", 0)
    await p.report(1025, "4", "u", 19, True, False)  # MA re-reports q1 on the replace
    await p.queue(1045, "q2", "4", "idle", 20)
    await p.report(1045, "4", "u", 20, True, False)
    assert sorted(await p.plays("u")) == [("4", 19.0, True), ("4", 20.0, True)]
    await p.history.close()


async def test_left_item_takes_mas_final_report_and_a_stale_jump_is_no_wrap(
    tmp_path: Path,
) -> None:
    """Live run 3 (docs/real-ma/): seek, then next. MA reports the left item's end 2.6 s after
    the item changed and sends the old stream's elapsed (65) as the new item's first jump."""
    p = await player(tmp_path)
    await p.queue(1000, "i9", "9", "playing", 0, duration=75)
    await p.report(1000.5, "9", "u", 12, False, True, duration=75)  # stale: not trusted
    await p.queue(1001, "i9", "9", "playing", 1, jump=True, duration=75)
    await p.queue(1014, "i9", "9", "playing", 54, jump=True, duration=75)  # seek
    await p.report(1020.5, "9", "u", 60, False, True, duration=75)
    await p.queue(1038, "c2", "2", "playing", 0)  # next: a new queue item
    await p.queue(1039.3, "c2", "2", "playing", 65, jump=True)  # the old stream's elapsed
    await p.queue(1040.6, "c2", "2", "playing", 26)
    await p.report(1040.6, "9", "u", 65, False, False, duration=75)  # MA's final report
    await p.queue(1041.4, "c2", "2", "playing", 2, jump=True)  # this stream's elapsed
    await p.queue(1049.3, "c2", "2", "idle", 9)
    await p.report(1049.3, "2", "u", 9, False, False)
    assert sorted(await p.plays("u")) == [("2", 9.0, False), ("9", 65.0, False)]
    await p.history.close()


async def test_a_stop_report_right_after_idle_names_the_listens_user(tmp_path: Path) -> None:
    """Live run 3: bob plays 12 s on a queue admin used last; MA sends the queue's idle 1 ms
    before bob's stop report, the only report of that listen."""
    p = await player(tmp_path)
    await p.queue(1000, "a1", "1", "playing", 0)
    await p.queue(1001, "a1", "1", "playing", 1, jump=True)
    await p.queue(1009, "a1", "1", "idle", 8)
    await p.report(1009, "1", "admin", 8, False, False)
    await p.report(1020, "1", "admin", 8, False, False)  # re-report at bob's play_media
    await p.queue(1021.4, "b3", "3", "playing", 0)
    await p.queue(1022, "b3", "3", "playing", 1, jump=True)
    await p.queue(1034.4, "b3", "3", "idle", 12)
    await p.report(1034.401, "3", "bob", 12, True, False)
    assert await p.plays("admin") == [("1", 8.0, False)]
    assert await p.plays("bob") == [("3", 12.0, True)]
    await p.report(1060, "3", "admin", 12, True, False)  # a later re-report moves nothing
    assert await p.plays("bob") == [("3", 12.0, True)]
    assert await p.plays("admin") == [("1", 8.0, False)]
    await p.history.close()


async def test_pause_keeps_the_listen_open_and_stop_books_it_at_once(tmp_path: Path) -> None:
    p = await player(tmp_path)
    await p.queue(1000, "q1", "2", "playing", 0)
    await p.report(1000, "2", "u", 9, False, True)
    await p.queue(1001, "q1", "2", "playing", 1, jump=True)
    await p.queue(1004, "q1", "2", "paused", 4)
    await p.report(1004, "2", "u", 4, False, False)  # pause: is_playing false, as a stop
    assert await p.plays("u") == []
    listen = await p.history.open_listen("u")
    assert listen is not None and (listen.track_id, listen.position, listen.playing) == (
        "library://track/2",
        4.0,
        False,
    )
    await p.queue(1010, "q1", "2", "playing", 4)
    await p.queue(1016, "q1", "2", "idle", 10)  # stop: booked now, not 30 minutes later
    assert await p.plays("u") == [("2", 10.0, True)]
    assert await p.history.open_listen("u") is None
    await p.report(1016, "2", "u", 10, True, False)  # the stop report: the same listen
    assert await p.plays("u") == [("2", 10.0, True)]
    await p.history.close()


async def test_a_re_report_under_the_next_user_books_nothing_for_them(tmp_path: Path) -> None:
    p = await player(tmp_path)
    await p.queue(1000, "q1", "3", "playing", 0)
    await p.report(1000, "3", "alice", 12, True, True)
    await p.queue(1001, "q1", "3", "playing", 1, jump=True)
    await p.queue(1012, "q1", "3", "idle", 12)
    await p.queue(1030, "q2", "8", "idle", 0)  # bob replaces the queue
    await p.report(1030, "3", "bob", 12, False, False)  # alice's listen, named bob
    await p.queue(1031, "q2", "8", "playing", 12)
    await p.queue(1031.5, "q2", "8", "playing", 1, jump=True)
    await p.queue(1040, "q2", "8", "idle", 9)
    assert await p.plays("alice") == [("3", 12.0, True)]
    assert await p.plays("bob") == [("8", 9.0, False)]  # bob's from the queue's user
    await p.history.close()


async def test_first_report_of_an_item_is_not_trusted(tmp_path: Path) -> None:
    p = await player(tmp_path)
    await p.queue(1000, "q1", "7", "playing", 12)  # the previous stream's elapsed
    await p.report(1000, "7", "u", 12, True, True)  # ... reported as fully played
    await p.queue(1003, "q1", "7", "idle", 15)  # stopped after 3 s
    assert await p.plays("u") == [("7", 3.0, False)]  # wall clock: no elapsed was its own
    await p.history.close()


async def test_repeat_one_wraps_are_separate_plays(tmp_path: Path) -> None:
    p = await player(tmp_path)
    await p.queue(1000, "q1", "5", "playing", 10)
    await p.report(1000, "5", "u", 10, True, True)
    await p.queue(1001, "q1", "5", "playing", 1, jump=True)
    await p.queue(1011, "q1", "5", "playing", 10)
    await p.queue(1021, "q1", "5", "playing", 1, jump=True)  # wrap: 20 s item from ~0 again
    await p.queue(1026, "q1", "5", "playing", 0, jump=True)  # a seek back after 5 s: no wrap
    await p.queue(1046, "q1", "5", "playing", 1, jump=True)  # wrap (20 s after the seek)
    await p.queue(1051, "q1", "5", "idle", 5)
    assert sorted(await p.plays("u")) == [("5", 5.0, False), ("5", 20.0, True), ("5", 20.0, True)]
    await p.history.close()


async def test_without_queue_events_a_booked_listen_is_not_re_booked_for_another_user(
    tmp_path: Path,
) -> None:
    p = await player(tmp_path)
    await p.report(1000, "3", "alice", 19, True, False)  # finished: booked
    await p.report(1010, "3", "bob", 19, True, False)  # re-report on bob's replace
    assert await p.plays("alice") == [("3", 19.0, True)]
    assert await p.plays("bob") == []
    await p.history.close()


def queue_event(
    item: str | None, state: str, elapsed: float, uri: str = "library://track/5"
) -> dict[str, Any]:
    current = None
    if item is not None:
        media = {"uri": uri, "media_type": "track", "duration": 20}
        current = {"queue_item_id": item, "duration": 20, "media_item": media}
    data = {"queue_id": Q, "state": state, "elapsed_time": elapsed, "current_item": current}
    return {"event": "queue_updated", "object_id": Q, "data": data}


def test_bridge_forwards_queue_transitions_only() -> None:
    t = QueueTracker()
    seen = [
        t.observe(m)
        for m in (
            queue_event(None, "idle", 0),  # cleared by play_media: skipped
            queue_event("i1", "idle", 0),  # new item
            queue_event("i1", "idle", 0),  # nothing changed
            queue_event("i1", "playing", 10),  # state
            queue_event("i1", "playing", 12),  # elapsed on: nothing a listen needs
            {"event": "queue_time_updated", "object_id": Q, "data": 1},  # elapsed set
            {"event": "queue_time_updated", "object_id": "other", "data": 1},  # unknown queue
            queue_event("i1", "playing", 0),  # elapsed back
            queue_event("i2", "playing", 0),
            queue_event("r1", "playing", 0, "tunein--x://radio/s1"),  # not a track: no listen
        )
    ]
    got = [None if s is None else (s[1].item_id, s[1].state, s[1].elapsed, s[2]) for s in seen]
    assert got == [
        None,
        ("i1", "idle", 0.0, False),
        None,
        ("i1", "playing", 10.0, False),
        None,
        ("i1", "playing", 1.0, True),
        None,
        ("i1", "playing", 0.0, False),
        ("i2", "playing", 0.0, False),
        ("r1", "idle", 0.0, False),
    ]


async def test_recorded_real_ma_sessions_fold_into_the_listens_made(tmp_path: Path) -> None:
    """The recordings through the bridge's translation and the worker's fold (no bus; the
    replay with a real worker is tests/test_ma_replay.py)."""
    assert await fold_trace("a", tmp_path / "a.db") == {
        ADMIN: [("library://track/2", 11.0, True), ("library://track/9", 75.0, True)],
        BOB: [],
    }
    assert await fold_trace("b", tmp_path / "b.db") == {
        ADMIN: [("library://track/5", s, s == 20.0) for s in (5.0, 20.0, 20.0)],
        BOB: [],
    }
    assert await fold_trace("c", tmp_path / "c.db") == {
        ADMIN: [("library://track/7", 12.0, True)],
        BOB: [("library://track/3", 11.0, True), ("library://track/8", 11.0, True)],
    }
    assert await fold_trace("twice", tmp_path / "t.db") == {
        ADMIN: [
            ("library://track/1", 8.0, False),
            ("library://track/4", 19.0, True),
            ("library://track/4", 20.0, True),
        ],
        BOB: [],
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": "stopped"}, "queue state must be playing, paused or idle"),
        ({"elapsed": "x"}, "finite numeric elapsed and duration"),
        ({"duration": float("inf")}, "finite numeric elapsed and duration"),
        ({"item_id": ""}, "item_id must not be empty"),
        ({"queue_id": 7}, "queue_id must be a string"),
    ],
)
def test_a_bad_queue_message_is_poison_with_its_reason(change: dict[str, Any], reason: str) -> None:
    good = {"queue_id": Q, "item_id": "i1", "track_id": "library://track/5", "state": "idle"}
    good |= {"elapsed": 0.0, "duration": 20.0, "jump": False, "timestamp": 1.0}
    event = parse_playback(subjects.QUEUE, good)
    assert event.queue is not None and event.user_id == f"queue:{Q}"
    with pytest.raises(Poison, match=reason):
        parse_playback(subjects.QUEUE, good | change)
