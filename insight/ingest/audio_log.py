"""A session's audio on JetStream: appends that a retry never stores twice.

Each publish carries a ``Nats-Msg-Id`` of the session and the byte offset it starts at. When a
publish reached the stream but its ack (or the session's KV update) was lost, the next publish
at that offset is answered "duplicate" with the first copy's sequence. What the stream holds is
the truth the session's consumer reads, so the stored copy is counted whole, and only the
part of the new body it does not already hold is appended: a retry of the same bytes (or of
more, or of less) stores each byte once; a different body sent after the lost one is kept after
it.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from insight.bus import subjects
from insight.ingest.session_state import SessionInfo

MAX_DUPLICATES = 64  # lost acks one append can meet in a row (each is one stored message)


async def append_audio(js: JetStreamContext, info: SessionInfo, data: bytes) -> None:
    """Append ``data`` to the session's audio; updates ``bytes_received`` and ``last_seq``."""
    subject = subjects.audio_subject(info.session_id)
    for _ in range(MAX_DUPLICATES):
        if not data:
            return
        msg_id = {"Nats-Msg-Id": f"{info.session_id}:{info.bytes_received}"}
        ack = await js.publish(subject, data, headers=msg_id)
        info.last_seq = ack.seq
        if not ack.duplicate:
            info.bytes_received += len(data)
            return
        stored = (await js.get_msg(subjects.AUDIO_STREAM, ack.seq)).data or b""
        info.bytes_received += len(stored)
        if data[: len(stored)] == stored:  # a retry: only what follows the stored copy is new
            data = data[len(stored) :]
        elif stored[: len(data)] == data:  # a retry of less than was stored: nothing is new
            return
    raise RuntimeError(f"session {info.session_id}: {MAX_DUPLICATES} duplicate appends in a row")
