"""The recorded real-MA playback traces (tests/data/real-ma/{a,b,c}-*.jsonl) folded into
listens without a bus: the bridge's translation (queue messages, played reports) and the
worker's parse + history writers, with the recorded times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ma_traces as mt

from insight.bus import subjects
from insight.history import ListeningHistory
from insight.ingest.parse import parse_playback
from insight.integrations.ma_events import played
from insight.integrations.ma_queue import QUEUE_EVENTS, QueueTracker, queue_message

ADMIN = "ItQedj8W3uoAjIBIPrSPUvGyjCML7B0MrZVqzbgtxGU"
BOB = "ullvoKAiIPuEThTkGwQgPr8p0NN00kDuDrz0keM6C8s"
REAL_TRACES = {
    "a": "a-playback-pause-seek-skip-stop.jsonl",
    "b": "b-repeat-one.jsonl",
    "c": "c-second-user.jsonl",
    "twice": "twice-play-media.jsonl",
}


def messages(name: str, base: float = 1_800_000_000.0) -> list[tuple[dict[str, Any], float]]:
    """(MA message, seen at) for every recorded event of a trace."""
    return [
        (
            {"event": ln["event"], "object_id": ln["object_id"], "data": ln.get("full")},
            base + ln["t"],
        )
        for ln in mt.recorded_lines(REAL_TRACES[name])
    ]


async def fold_trace(name: str, path: Path) -> dict[str, list[tuple[str, float, bool]]]:
    """Each user's plays (track, seconds, fully played) after the trace."""
    history = ListeningHistory(path)
    await history.open()
    tracker = QueueTracker()
    try:
        for seq, (message, seen) in enumerate(messages(name), 1):
            if message["event"] in QUEUE_EVENTS:
                got = tracker.observe(message)
                out = None if got is None else queue_message(*got, got[1].uri, "q", seen)
            elif message["event"] == "media_item_played":
                out = played(message, "p", seen)
            else:
                continue
            if out is None:
                continue
            event = parse_playback(out.subject, out.payload)
            if out.subject == subjects.QUEUE:
                writer = ListeningHistory.queue_writer(event.queue)  # type: ignore[arg-type]
            else:
                writer = ListeningHistory.report_writer(event.report)  # type: ignore[arg-type]
            await history.apply_event("c", seq, writer)
        return {
            user: sorted(
                (p.track_id, p.seconds_played, p.fully_played) for p in await history.plays(user)
            )
            for user in (ADMIN, BOB)
        }
    finally:
        await history.close()
