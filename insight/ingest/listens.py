"""Playback progress reports → listens (pure; the history stores the state).

MA's player queue controller sends a ``MediaItemPlaybackProgressReport`` on every queue state
change (play, pause, stop, next item) and every 30 s while playing, with ``is_playing =
is_current_item and state == PLAYING`` and ``seconds_played`` = the queue's elapsed time. So a
pause sends ``is_playing: false`` exactly like the report of a finished item: neither alone ends
a listen. One user listens to one thing at a time; a listen ends (and is booked as one play, at
its last reported position) when:

- a report for another track of the same user arrives (next item, skip),
- a report for the same track starts over (repeat-one, play again) after the listen could have
  reached its end,
- it was reported fully played and stopped (booked at once; a resume updates the same play),
- nothing was reported for ``idle_s`` (stop, player gone): the history's sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

END_SLACK_S = 10.0  # MA: the current item is fully played within 10 s of its end
SEEK_SLACK_S = 5.0
IDLE_S = 1800.0


@dataclass(frozen=True, slots=True)
class Report:
    user_id: str
    track_id: str
    ts: float
    position: float
    duration: float
    fully_played: bool
    is_playing: bool


@dataclass(frozen=True, slots=True)
class Listen:
    track_id: str
    started: int
    last_ts: float
    position: float
    duration: float
    fully_played: bool
    playing: bool
    booked: bool = False


def _restarts(open_: Listen, r: Report) -> bool:
    """The same track from an earlier position, after the listen could have ended."""
    if r.position >= open_.position - SEEK_SLACK_S:
        return False
    played_since = (r.ts - open_.last_ts) if open_.playing else 0.0
    could_end = open_.position + played_since >= open_.duration - END_SLACK_S
    return open_.booked or could_end


def fold(open_: Listen | None, r: Report, idle_s: float = IDLE_S) -> tuple[list[Listen], Listen]:
    """Apply one report: the listens to book (write as plays) and the user's open listen."""
    book: list[Listen] = []
    if open_ is not None and (
        r.track_id != open_.track_id or r.ts - open_.last_ts > idle_s or _restarts(open_, r)
    ):
        if not open_.booked:
            book.append(open_)
        open_ = None
    if open_ is None:
        current = Listen(
            track_id=r.track_id,
            started=int(r.ts - r.position),
            last_ts=r.ts,
            position=r.position,
            duration=r.duration,
            fully_played=r.fully_played,
            playing=r.is_playing,
        )
    else:
        current = replace(
            open_,
            last_ts=max(open_.last_ts, r.ts),
            position=r.position,
            duration=r.duration or open_.duration,
            fully_played=open_.fully_played or r.fully_played,
            playing=r.is_playing,
        )
    if not r.is_playing and r.fully_played:
        book.append(current)  # finished: booked now; a resume re-books the same play
        current = replace(current, booked=True)
    elif current.booked and r.position > open_position(open_):
        book.append(current)  # resumed after being booked: the same play, further on
    return book, current


def open_position(listen: Listen | None) -> float:
    return listen.position if listen is not None else 0.0
