"""Progress reports → listens: MA's report model (one report per queue state change)."""

from __future__ import annotations

from pathlib import Path

from insight.history import ListeningHistory
from insight.ingest.listens import Listen, Report, fold


def run(
    reports: list[tuple[str, float, float, bool, bool]], duration: float = 200.0
) -> tuple[list[Listen], Listen | None]:
    """(track, ts, position, fully_played, is_playing) for one user → booked, still open."""
    booked: list[Listen] = []
    open_: Listen | None = None
    for track, ts, pos, full, playing in reports:
        book, open_ = fold(open_, Report("u", track, ts, pos, duration, full, playing))
        booked += book
    return booked, open_


def test_pause_resume_seek_is_one_listen_booked_at_the_end() -> None:
    booked, open_ = run(
        [
            ("a", 1030, 30, False, True),
            ("a", 1045, 45, False, False),  # pause: MA sends is_playing false
            ("a", 1300, 45, False, True),  # resume
            ("a", 1310, 120, False, True),  # seek forward
            ("a", 1330, 140, False, True),
        ]
    )
    assert booked == [] and open_ is not None and open_.position == 140
    booked, open_ = run(
        [
            ("a", 1030, 30, False, True),
            ("a", 1045, 45, False, False),
            ("a", 1300, 45, False, True),
            ("a", 1460, 195, True, False),  # next item: the previous one's final report
        ]
    )
    assert [(b.track_id, b.position, b.fully_played, b.started) for b in booked] == [
        ("a", 195, True, 1000)
    ]


def test_skip_books_the_short_listen_when_the_next_track_reports() -> None:
    booked, open_ = run([("a", 1012, 12, False, False), ("b", 1042, 30, False, True)])
    assert [(b.track_id, b.position, b.fully_played) for b in booked] == [("a", 12, False)]
    assert open_ is not None and open_.track_id == "b" and not open_.booked


def test_repeat_one_is_two_plays_but_a_seek_back_is_not() -> None:
    booked, _ = run(
        [
            ("a", 1180, 180, False, True),
            ("a", 1230, 30, False, True),  # 20 s to the end + 30 s: it started over
            ("a", 1400, 200, True, False),
        ]
    )
    assert [(b.position, b.started) for b in booked] == [(180, 1000), (200, 1200)]
    booked, open_ = run([("a", 1150, 150, False, True), ("a", 1160, 30, False, True)])
    assert booked == [] and open_ is not None and open_.started == 1000  # seek back


def test_finished_then_resumed_rebooks_the_same_play() -> None:
    booked, open_ = run([("a", 1192, 192, True, False), ("a", 1300, 192, True, True)])
    assert len(booked) == 1 and open_ is not None and open_.booked
    booked, open_ = run(
        [("a", 1192, 192, True, False), ("a", 1300, 192, True, True), ("a", 1308, 200, True, False)]
    )
    assert {b.started for b in booked} == {1000} and booked[-1].position == 200


def test_idle_listen_is_booked_and_the_next_report_starts_a_new_one() -> None:
    booked, open_ = run([("a", 1045, 45, False, False), ("a", 1045 + 4000, 45, False, True)])
    assert [(b.position, b.started) for b in booked] == [(45, 1000)]
    assert open_ is not None and open_.started == 5000


async def test_history_books_an_idle_listen_once_and_applies_each_event_once(
    tmp_path: Path,
) -> None:
    history = ListeningHistory(tmp_path / "h.db")
    await history.open()
    try:
        paused = Report("u", "a", 1045.0, 45.0, 200.0, False, False)
        assert await history.apply_event("c", 7, ListeningHistory.report_writer(paused))
        assert not await history.apply_event("c", 7, ListeningHistory.report_writer(paused))
        assert await history.plays("u") == []  # a pause is not a play
        assert await history.sweep(now=1045.0 + 100, idle_s=1800) == 0
        assert await history.sweep(now=1045.0 + 1801, idle_s=1800) == 1
        [play] = await history.plays("u")
        assert (play.track_id, play.ts, play.seconds_played, play.skipped) == (
            "a",
            1000,
            45.0,
            False,
        )
        assert await history.open_listen("u") is None
        assert await history.sweep(now=1e10, idle_s=1800) == 0  # booked once
        assert len(await history.plays("u")) == 1
    finally:
        await history.close()
