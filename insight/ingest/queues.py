"""Music Assistant queue items → listens (pure; the history stores the state).

MA's ``media_item_played`` reports alone cannot tell a second play of a track from a resume,
re-report the previous queue item with the *new* user's id when ``play_media`` replaces a
queue, and carry the previous stream's elapsed time in the first report of an item (see
docs/music-assistant.md). The bridge therefore also forwards the queue's own transitions
(``QueueUpdate``: current queue item, state, elapsed), and a listen is one **segment**: one
pass of one queue item. A segment

- starts when a queue item becomes current (a new ``queue_item_id``: every ``play_media`` and
  every next item) or when the player's elapsed jumps back to ~0 after the item could have
  ended (a repeat-one wrap, seen only in ``queue_time_updated``);
- counts its position in wall-clock seconds while playing until the player's elapsed is known
  to be this stream's (``jump``: a ``queue_time_updated``); only then are MA's positions used
  (never those of an item's first report);
- is booked when its queue item is left, wraps, or the queue stops (state ``idle``); a pause
  keeps it open;
- belongs to the queue's user: MA names it in every report (``userid`` = the user who last
  started playback on the queue), never in queue events.

A not-playing report of an item already booked (the stop report, the re-report on a replace)
changes nothing unless it moves the position on, and changes the user only in one case: MA
sends a stop as the queue's ``idle`` and then, a millisecond later, the stop report naming the
user; a listen too short for any earlier report (< 30 s) was booked to the queue's previous
user at the ``idle``, so that report (within ``REOWN_S``) moves it to its user. An item left
for the next one is booked with an estimate of where it ended; MA's final report of it (within
``FINAL_REPORT_S``) replaces the estimate. A jump of the elapsed time past the new item's
duration is the previous stream's last elapsed (MA sends it after the item changed) and is
not this stream's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

END_SLACK_S = 10.0  # MA: the current item is fully played within 10 s of its end
WRAP_START_S = 5.0  # a repeat wrap restarts the elapsed time at about 0
SEEK_SLACK_S = 5.0
REOWN_S = 2.0  # the stop report follows the queue's idle within milliseconds (real MA)
FINAL_REPORT_S = 10.0  # MA's report of the item it left came 2.6 s after the item changed
PLAYING, PAUSED, IDLE = "playing", "paused", "idle"


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    queue_id: str
    item_id: str  # MA's queue_item_id of the current item
    track_id: str
    state: str
    elapsed: float
    duration: float
    ts: float
    jump: bool = False  # queue_time_updated: the player's elapsed was set (start, seek, wrap)


@dataclass(frozen=True, slots=True)
class Segment:
    """One pass of one queue item: one listen."""

    item_id: str
    wrap: int
    track_id: str
    user_id: str = ""  # "" unknown yet
    owned: bool = False  # the user came from a report of this item
    state: str = IDLE
    started: int = 0  # when it began playing (the play's key); 0: it never played
    last_ts: float = 0.0
    position: float = 0.0
    reached: float = 0.0
    duration: float = 0.0
    trusted: bool = False  # positions are this stream's (not the previous stream's)
    reported: bool = False
    fully_played: bool = False
    booked: float = -1.0  # the seconds it was booked with; -1: not booked
    booked_ts: float = 0.0  # when it was (last) booked
    estimated: bool = False  # booked when left, from an estimate of its end
    unbook_user: str = ""  # booked to this user before: the history moves the play
    final: bool = False  # MA's final report of the left item set its end and fully_played

    def seconds(self) -> float:
        """What is booked: the furthest position, bounded by the duration (MA's positions
        include seek offsets and can run past the end)."""
        return float(round(min(self.reached, self.duration) if self.duration else self.reached))

    def full(self) -> bool:
        if self.final:  # MA's own verdict for an item it left (90 % of it, not the last 10 s)
            return self.fully_played
        secs = self.seconds()
        return self.fully_played or (self.duration > 0 and secs >= self.duration - END_SLACK_S)


@dataclass(frozen=True, slots=True)
class QueueState:
    queue_id: str
    user_id: str = ""
    cur: Segment | None = None
    prev: Segment | None = None


def advance(seg: Segment, ts: float, ended: bool = False) -> Segment:
    """Count the wall-clock seconds played since the segment's last update: the position of
    an item whose elapsed is not known to be this stream's, the estimated end of one that
    was left (``ended``) with no elapsed time sent at the end."""
    if seg.state != PLAYING or ts <= seg.last_ts:
        return replace(seg, last_ts=max(seg.last_ts, ts))
    pos = seg.position + ts - seg.last_ts
    reached = max(seg.reached, pos) if ended or not seg.trusted else seg.reached
    return replace(seg, last_ts=ts, position=pos, reached=reached)


def _book(seg: Segment, out: list[Segment], force: bool = False) -> Segment:
    """Book (or re-book, further on, or ``force``d) a segment that played and has a user."""
    if not seg.started or not seg.user_id:
        return seg
    secs = seg.seconds()
    if seg.booked >= 0 and secs <= seg.booked and not force:
        return seg
    seg = replace(seg, booked=secs, booked_ts=seg.last_ts)
    out.append(seg)
    return replace(seg, unbook_user="")


def _wraps(seg: Segment, u: QueueUpdate) -> bool:
    return (
        u.jump
        and u.state == PLAYING
        and seg.duration > 0
        and u.elapsed <= WRAP_START_S
        and u.elapsed < seg.position - SEEK_SLACK_S
        and seg.position >= seg.duration - END_SLACK_S
    )


def on_queue(q: QueueState, u: QueueUpdate) -> tuple[list[Segment], QueueState]:
    """Apply one queue update: the segments to book and the queue's new state."""
    book: list[Segment] = []
    cur, prev = q.cur, q.prev
    if cur is None or cur.item_id != u.item_id:
        if cur is not None:
            left = advance(cur, u.ts, ended=True)  # its end extrapolated while playing
            prev = _book(replace(left, estimated=cur.state == PLAYING), book)
        cur = Segment(u.item_id, 0, u.track_id, q.user_id, last_ts=u.ts, duration=u.duration)
    else:
        cur = advance(cur, u.ts)
        if _wraps(cur, u):
            _book(replace(cur, reached=max(cur.reached, cur.position)), book)
            cur = replace(
                cur,
                wrap=cur.wrap + 1,
                started=0,
                position=0.0,
                reached=0.0,
                fully_played=False,
                booked=-1.0,
            )
        stale = cur.duration > 0 and u.elapsed > cur.duration + SEEK_SLACK_S
        if u.jump and not stale:
            cur = replace(
                cur, trusted=True, position=u.elapsed, reached=max(cur.reached, u.elapsed)
            )
        elif cur.trusted:
            cur = replace(cur, position=u.elapsed, reached=max(cur.reached, u.elapsed))
    if u.state == PLAYING and not cur.started:
        cur = replace(cur, started=int(u.ts - (cur.position if cur.trusted else 0.0)))
    cur = replace(cur, state=u.state, duration=u.duration or cur.duration)
    if u.state == IDLE or cur.booked >= 0:  # stopped (or resumed after a stop: further on)
        cur = _book(cur, book)
    return book, replace(q, cur=cur, prev=prev)


def match(q: QueueState, track_id: str, is_playing: bool) -> str | None:
    """Which of the queue's segments a report is about: "cur", "prev" or None.

    A not-playing report while the queue plays the same track again is the previous item's
    (MA reports the item it left when ``play_media`` replaces the queue)."""
    cur, prev = q.cur, q.prev
    cur_ok = cur is not None and cur.track_id == track_id
    if cur_ok and (is_playing or cur.state != PLAYING):  # type: ignore[union-attr]
        return "cur"
    if not is_playing and prev is not None and prev.track_id == track_id:
        return "prev"
    return "cur" if cur_ok else None


def on_report(
    q: QueueState,
    which: str | None,
    user_id: str,
    position: float,
    duration: float,
    fully_played: bool,
    is_playing: bool,
    ts: float,
) -> tuple[list[Segment], QueueState]:
    """Apply one progress report of this queue (``which`` from ``match``; None: an item this
    queue no longer holds, only its user is learnt)."""
    book: list[Segment] = []
    q = replace(q, user_id=user_id or q.user_id)  # the queue's user now, whatever the item
    cur, prev = q.cur, q.prev
    if cur is not None and not cur.owned and cur.booked < 0 and q.user_id:
        cur = replace(cur, user_id=q.user_id)
    seg = cur if which == "cur" else prev if which == "prev" else None
    if seg is not None and not is_playing and seg.booked >= 0:
        if which == "prev" and seg.estimated and ts - seg.booked_ts <= FINAL_REPORT_S:
            # MA's final report of the item it left: the exact end, not our estimate
            seg = replace(
                seg, reached=position, fully_played=fully_played, estimated=False, final=True
            )
            prev = _book(seg, book, force=True)
            return book, replace(q, cur=cur, prev=prev)
        reown = user_id and user_id != seg.user_id and not seg.owned
        if which == "cur" and reown and ts - seg.booked_ts <= REOWN_S:
            seg = replace(seg, unbook_user=seg.user_id, user_id=user_id, owned=True)
            cur = _book(seg, book, force=True)
            return book, replace(q, cur=cur, prev=prev)
    if seg is not None:
        seg = advance(seg, ts) if which == "cur" else seg
        if which == "cur" and user_id and seg.booked < 0:
            seg = replace(seg, user_id=user_id, owned=True)
        if seg.trusted and seg.reported:  # never the first report: stale elapsed (MA §4)
            seg = replace(
                seg,
                position=position,
                reached=max(seg.reached, position),
                fully_played=seg.fully_played or fully_played,
            )
        seg = replace(seg, reported=True, duration=seg.duration or duration)
        if seg.booked >= 0 or (which == "cur" and not is_playing and seg.state == IDLE):
            seg = _book(seg, book)
        if which == "cur":
            cur = seg
        else:
            prev = seg
    if cur is not None and cur.state == IDLE and cur.booked < 0:
        cur = _book(cur, book)  # stopped before its user was known
    return book, replace(q, cur=cur, prev=prev)
