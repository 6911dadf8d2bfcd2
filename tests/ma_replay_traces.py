"""Music Assistant traces for the replay tests (tests/test_ma_replay.py): what MA does, step by
step, as real ``music-assistant-models`` objects sent the way MA sends them, with the store and
history MA's own state implies at the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import ma_traces as mt
from fake_music_assistant import FakeMusicAssistant
from music_assistant_models.enums import EventType
from music_assistant_models.media_items import Track
from real_ma_listens import ADMIN, BOB, REAL_TRACES

from insight.history import is_skip
from insight.integrations.music_assistant import MusicAssistantBridge

T = mt.recorded_tracks()
ADDED, UPDATED, DELETED = (
    EventType.MEDIA_ITEM_ADDED,
    EventType.MEDIA_ITEM_UPDATED,
    EventType.MEDIA_ITEM_DELETED,
)
USER = "user-a"  # the MA user of the bridge's token (auth/me): favorites are booked to it


class ReplayClock:
    """The bridge's clock (``BridgeOptions.clock``): the recorded time of the event being
    received during a timed replay, the real time otherwise."""

    def __init__(self) -> None:
        self.now: float | None = None

    def __call__(self) -> float:
        return self.now if self.now is not None else time.time()


@dataclass
class Ma:
    """MA's side of a trace: library changes emit the event MA sends for them."""

    fake: FakeMusicAssistant
    bridge: MusicAssistantBridge
    checkpoint: Callable[[str], Awaitable[None]]
    clock: ReplayClock = field(default_factory=ReplayClock)

    def _set(self, track: Track) -> None:
        self.fake.library = [t for t in self.fake.library if t["uri"] != track.uri]
        self.fake.library.append(track.to_dict())
        self.fake.library.sort(key=lambda t: int(t["item_id"]))

    async def add(self, track: Track, kind: EventType = ADDED) -> None:
        self._set(track)
        await self.fake.emit_raw(mt.event(kind, track))

    async def update(self, track: Track) -> None:
        await self.add(track, UPDATED)

    async def delete(self, track: Track) -> None:
        self.fake.library = [t for t in self.fake.library if t["uri"] != track.uri]
        await self.fake.emit_raw(mt.event(DELETED, track))

    async def send(self, raw: str) -> None:
        await self.fake.emit_raw(raw)


async def received(fake: FakeMusicAssistant, bridge: MusicAssistantBridge) -> None:
    """Everything MA sent reached the bridge, was translated and acknowledged by JetStream."""
    for _ in range(200):
        if bridge.stats.events >= fake.sent:
            break
        await asyncio.sleep(0.05)
    assert bridge.stats.events == fake.sent
    await bridge.drained()
    for _ in range(200):  # a backfill the events started
        task = bridge._backfill
        if task is None or task.done():
            break
        await asyncio.sleep(0.05)
    await bridge.drained()


async def wait_until(cond: Callable[[], bool], what: str, limit_s: float = 20) -> None:
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- traces ---------------------------------------------------------------------------------


async def library_trace(ma: Ma) -> None:
    """add / edit / toggle back and forth / delete / re-add, and a favorite toggled."""
    t2, t3, t5 = T["library://track/2"], T["library://track/3"], T["library://track/5"]
    drone, ambient = mt.edited(t2, genres=["Drone"]), mt.edited(t2, genres=["Ambient"])
    for step in (ma.add(t2), ma.add(t3), ma.update(drone), ma.update(ambient), ma.update(drone)):
        await step
    await ma.checkpoint("")
    for step in (ma.delete(t3), ma.add(t3), ma.add(t5), ma.delete(t5), ma.add(t5), ma.delete(t5)):
        await step
    await ma.checkpoint("")
    for fav in (True, False, True):
        await ma.update(mt.edited(drone, favorite=fav))


LIBRARY_STORE = {
    "library://track/2": ("Sine Morning", ["Drone"]),
    "library://track/3": ("Classic Pure", ["Classical"]),
}
LIBRARY_HISTORY = {USER: {"plays": [], "favorites": ["library://track/2"]}}


def long(track: Track, seconds: int = 240) -> Track:
    return mt.edited(track, duration=seconds)


async def playback_trace(ma: Ma) -> None:
    """pause/resume/seek, skip, repeat-one, two users, provider-uri plays."""
    t2, t3, t4 = long(T["library://track/2"]), long(T["library://track/3"]), T["library://track/4"]
    t6 = mt.with_mapping(T["library://track/6"], "spotify--x1", "abc")
    t9 = T["library://track/9"] if "library://track/9" in T else mt.edited(t4, item_id="9")
    for track in (t2, t3, t4, t6):
        await ma.add(track)
    ma._set(mt.with_mapping(t9, "tidal--y2", "99"))  # in MA's library, no event seen yet
    await ma.fake.emit_raw(mt.event(ADDED, t9))
    r = mt.report
    # alice: t2 played, paused at 45 s, resumed, sought forward, then the next item started.
    for raw in (
        r(t2, "alice", 30, playing=True),
        r(t2, "alice", 45, playing=False),
        r(t2, "alice", 45, playing=True),
        r(t2, "bob", 100, playing=True),  # bob listens to the same track elsewhere
        r(t2, "alice", 150, playing=True),
        r(t2, "alice", 236, playing=False, is_current=False),
    ):
        await ma.send(raw)
    await ma.checkpoint("")
    # alice skips t3 at 12 s; t4 plays with repeat-one (the same queue item starts over).
    for raw in (
        r(t3, "alice", 12, playing=False, is_current=False),
        r(t4, "alice", 14, playing=True),
        r(t4, "alice", 6, playing=True),
        r(t4, "alice", 19, playing=False, is_current=False),
    ):
        await ma.send(raw)
    await ma.checkpoint("")
    # bob leaves t2 at 100 s for provider items: one mapped by an event, one MA must resolve.
    for raw in (
        r(t2, "bob", 100, playing=False, is_current=False),
        r(t6, "bob", 19, playing=False, is_current=False, uri="spotify--x1://track/abc"),
        r(t9, "bob", 18, playing=False, is_current=False, uri="tidal--y2://track/99"),
    ):
        await ma.send(raw)


PLAYBACK_HISTORY = {
    "alice": {
        "plays": sorted(
            [
                ("library://track/2", 236.0, True, False),
                ("library://track/3", 12.0, False, True),
                ("library://track/4", 14.0, True, False),
                ("library://track/4", 19.0, True, False),
            ]
        ),
        "favorites": [],
    },
    "bob": {
        "plays": sorted(
            [
                ("library://track/2", 100.0, False, False),
                ("library://track/6", 19.0, True, False),
                ("library://track/9", 18.0, True, False),
            ]
        ),
        "favorites": [],
    },
}


URIS = [f"library://track/{n}" for n in range(1, 9)]


async def disconnect_trace(ma: Ma) -> None:
    """MA changes while the bridge is away; a failed backfill deletes nothing, a complete one
    (after a sync that ends the schema-29 way: ``sync_tasks_updated`` with no task) does."""
    await wait_until(lambda: ma.bridge.stats.backfills == 1, "the first backfill")
    await received(ma.fake, ma.bridge)
    await ma.checkpoint("listed")
    await ma.fake.drop()  # MA restarts; meanwhile tracks 1 and 8 go, 6 is unfavorited
    ma.fake.library = [t for t in ma.fake.library if t["uri"] not in (URIS[0], URIS[7])]
    for t in ma.fake.library:
        t["favorite"] = t["favorite"] and t["uri"] != URIS[5]
    ma.fake.fail_page_at = 3  # ... and the catch-up listing fails on its 2nd page

    def pages_at_3() -> int:
        return sum(
            c["command"] == "music/tracks/library_items" and c["args"]["offset"] == 3
            for c in ma.fake.commands
        )

    await wait_until(lambda: pages_at_3() == 2 and ma.bridge.connected.is_set(), "page 2")
    await received(ma.fake, ma.bridge)
    await ma.checkpoint("partial")
    ma.fake.fail_page_at = None
    await ma.send(mt.sync_tasks(1))
    await ma.send(mt.sync_tasks(0))
    await wait_until(lambda: ma.bridge.stats.backfills == 2, "the sync's backfill")


DISCONNECT_LIBRARY = [mt.edited(T[u], favorite=u in (URIS[1], URIS[5])) for u in URIS]
# At both checkpoints nothing is deleted yet (the partial listing deletes nothing).
DISCONNECT_CHECKS = {
    "listed": (URIS, [URIS[1], URIS[5]]),
    "partial": (URIS, [URIS[1], URIS[5]]),
}


def recorded_event(line: dict[str, Any]) -> str:
    """A recorded line back as the message MA sent (tracks exactly; others as shapes)."""
    data: Any = line.get("full")
    if data is None and isinstance(line.get("data"), str) and line["data"].startswith("list["):
        n = int(line["data"][5:-1])
        data = [{"provider_domain": "filesystem_local", "media_types": ["track"]}] * n
    elif data is None:
        data = {k: line[k] for k in ("media_type", "name", "uri", "favorite") if k in line}
    return json.dumps({"event": line["event"], "object_id": line["object_id"], "data": data})


async def recorded_trace(ma: Ma) -> None:
    """Both recordings of a real MA server (sync, edit, favorite, remove, file changes, restart,
    squeezelite playback), with MA's library following them for the backfills its syncs start."""
    lines = mt.recorded_lines("library-sync-edit-delete.jsonl")
    lines += mt.recorded_lines("restart-favorite-playback.jsonl")
    for i, line in enumerate(lines):
        full = line.get("full")
        if full and line["event"] != "media_item_played":
            track = Track.from_dict(full)
            if line["event"] == "media_item_deleted":
                ma.fake.library = [t for t in ma.fake.library if t["uri"] != track.uri]
            else:
                ma._set(track)
        await ma.send(recorded_event(line))
        if i in (40, 80):
            await ma.checkpoint("")


async def edit_during_backfill_trace(ma: Ma) -> None:
    """An edit and a favorite whose events arrive before the answer to a page MA read earlier:
    the page's older state must not win."""
    await wait_until(lambda: ma.bridge.stats.backfills == 1, "the first backfill")
    await received(ma.fake, ma.bridge)
    await ma.checkpoint("")
    t2 = T["library://track/2"]
    ma.fake.before_page = lambda: ma.update(mt.edited(t2, genres=["Drone"], favorite=True))
    await ma.send(mt.sync_tasks(1))
    await ma.send(mt.sync_tasks(0))
    await wait_until(lambda: ma.bridge.stats.backfills == 2, "the sync's backfill")
    await ma.checkpoint("")


def real_playback_trace(name: str) -> Callable[[Ma], Awaitable[None]]:
    """A recorded real-MA playback session (tests/data/real-ma, all events: queues, players,
    reports), each event received at its recorded time after the replay's start."""

    async def run(ma: Ma) -> None:
        lines = mt.recorded_lines(REAL_TRACES[name])
        base = time.time()
        for i, line in enumerate(lines):
            ma.clock.now = base + line["t"]
            await ma.send(recorded_event(line))
            for _ in range(2000):  # the bridge stamps it with the clock when it arrives
                if ma.bridge.stats.events >= ma.fake.sent:
                    break
                await asyncio.sleep(0.005)
            if i in (len(lines) // 3, 2 * len(lines) // 3):
                await ma.checkpoint("")
        ma.clock.now = None

    return run


def plays(*rows: tuple[int, float, bool]) -> dict[str, Any]:
    """A user's plays (track number, seconds, fully played); the recorded tracks last 20 s,
    Long Drone (9) 75 s."""
    out = [
        (f"library://track/{n}", secs, full, is_skip(secs, 75.0 if n == 9 else 20.0, full))
        for n, secs, full in rows
    ]
    return {"plays": sorted(out), "favorites": []}


# What the person did (README of the recordings), not what MA's playlog kept:
# a: Long Drone (75 s) played, paused, resumed, sought to 40 s, next at ~63 s (MA's position
#    runs to 77 with the seek offset: bounded by the duration); Sine Morning ~11 s, stop. The
#    re-report of the previous session's Sine Morning (9 s) is not a listen of this session.
# b: repeat-one Folk Hum (20 s): two full passes and 5 s of a third, then stop (MA reports
#    only the start and the stop). The re-report of (a)'s Sine Morning is not booked.
# c: bob plays Classic Pure 11 s and (started by admin for bob) Jazz Beep 11 s; admin plays
#    Rock Tone 12 s. The re-reports on each replace carry the next user's id: not booked.
# twice: Square Dance (20 s) played in full by two play_media, then Sine Morning 8 s.
REAL_HISTORY = {
    "a": {ADMIN: plays((9, 75.0, True), (2, 11.0, True)), BOB: plays()},
    "b": {ADMIN: plays((5, 20.0, True), (5, 20.0, True), (5, 5.0, False)), BOB: plays()},
    "c": {ADMIN: plays((7, 12.0, True)), BOB: plays((3, 11.0, True), (8, 11.0, True))},
    "twice": {ADMIN: plays((4, 19.0, True), (4, 20.0, True), (1, 8.0, False)), BOB: plays()},
}

PLAYER = "TCkFBNkBC9hUHoGpUuLcWKr5RrsPquB12gt7TlPUfYg"  # the real server's user id


@dataclass(frozen=True)
class Trace:
    run: Callable[[Ma], Awaitable[None]]
    store: dict[str, tuple[str, list[str] | None]] | None  # uri → (name, genres or unchecked)
    history: dict[str, Any]
    library: list[Track] | None = None
    page_size: int = 500


TRACES = {
    "library": Trace(
        library_trace, {k: (n, g) for k, (n, g) in LIBRARY_STORE.items()}, LIBRARY_HISTORY
    ),
    "playback": Trace(playback_trace, None, PLAYBACK_HISTORY),
    "disconnect": Trace(
        disconnect_trace,
        {u: (T[u].name, None) for u in URIS[1:7]},
        {USER: {"plays": [], "favorites": [URIS[1]]}},
        DISCONNECT_LIBRARY,
        3,
    ),
    "edit-during-backfill": Trace(
        edit_during_backfill_trace,
        {
            "library://track/2": ("Sine Morning", ["Drone"]),
            "library://track/3": ("Classic Pure", ["Classical"]),
        },
        {USER: {"plays": [], "favorites": ["library://track/2"]}},
        [T["library://track/2"], T["library://track/3"]],
    ),
    **{
        f"real-{name}": Trace(real_playback_trace(name), None, REAL_HISTORY[name])
        for name in REAL_TRACES
    },
    "recorded": Trace(
        recorded_trace,
        {
            "library://track/2": ("Sine Morning", None),
            "library://track/3": ("Classic Pure (Edited)", ["Baroque", "Classical"]),
            "library://track/4": ("Square Dance (Offline Edit)", None),
            "library://track/5": ("Folk Hum v2", ["Acoustic"]),
            "library://track/6": ("Sine Noon", None),
            "library://track/9": ("New Arrival", None),
        },
        {
            PLAYER: {"plays": [("library://track/6", 14.0, True, False)], "favorites": []},
            USER: {"plays": [], "favorites": []},
        },
    ),
}
