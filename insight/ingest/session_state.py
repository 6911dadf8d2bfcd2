"""The state of one streaming session: what every worker knows (KV) and what its owner holds.

``SessionInfo`` is the KV value shared by all workers. ``LiveSession`` is the owner's processing
state: a streaming resampler, a window cutter and the window vectors so far, so the owner holds
at most one window of audio however long the session runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from insight.errors import BadRequest, BusTimeout, Conflict, InsightError
from insight.inference.audio import StreamResampler, decode_pcm
from insight.inference.model import track_vector
from insight.ingest.windows import WindowCutter
from insight.schemas import SessionStatus

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from insight.config import AudioSettings
    from insight.state import ModelSlot

log = logging.getLogger("insight.sessions")

SAMPLE_BYTES = {"pcm_f32_le": 4, "pcm_s16_le": 2, "pcm_s24_le": 3}


@dataclass
class SessionInfo:
    """What every worker knows about a session (the KV value)."""

    session_id: str
    track_id: str
    metadata: dict[str, Any]
    format: str
    sample_rate: int
    channels: int
    owner: str
    status: str = SessionStatus.ACTIVE.value
    created_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    bytes_received: int = 0
    last_seq: int = 0
    windows_completed: int = 0

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_BYTES[self.format] * self.channels

    @property
    def seconds(self) -> float:
        return self.bytes_received / (self.frame_bytes * self.sample_rate)


def already_stored(info: SessionInfo, offset: int | None, size: int) -> int:
    """How many leading bytes of a frames body at ``offset`` the session already holds.

    A client that sends the offset can retry a request whose reply it lost: what was stored
    is skipped, never stored twice. A body that would leave a gap is refused.
    """
    if offset is None:
        return 0
    if offset % info.frame_bytes:
        raise BadRequest(
            f"offset {offset} is not a whole number of {info.frame_bytes}-byte frames "
            f"({info.format}, {info.channels} channel(s))"
        )
    if offset > info.bytes_received:
        raise Conflict(
            f"frames at byte {offset} would leave a gap: session {info.session_id} holds "
            f"{info.bytes_received} bytes; resend from offset {info.bytes_received}"
        )
    return min(size, info.bytes_received - offset)


def track_key(track_id: str) -> str:
    return "track_" + hashlib.sha1(track_id.encode()).hexdigest()


def check_session_id(session_id: str) -> str:
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        raise BadRequest(f"Invalid session ID {session_id[:64]!r}: expected a UUID") from None


class LiveSession:
    """The owner's processing state: resampler, window cutter and the window vectors so far."""

    def __init__(self, info: SessionInfo, loaded: ModelSlot, audio: AudioSettings) -> None:
        self.info = info
        self.loaded = loaded
        model = loaded.require_pool().model
        spec = model.audio_spec(audio.window_size_s, audio.hop_size_s)
        self.rate = spec.sample_rate  # a swap to a model of another rate fails the session
        self.resampler = StreamResampler(info.sample_rate, spec.sample_rate)
        self.cutter = WindowCutter(spec.window, spec.hop, spec.padding)
        self.vectors: list[np.ndarray] = []
        self.processed_seq = 0
        self.error: str | None = None
        self.progress = asyncio.Condition()
        self.sub: Any = None

    async def _embed(self, windows: np.ndarray) -> None:
        if windows.shape[0]:
            pool = self.loaded.require_pool()
            self.vectors.extend(await pool.embed_windows(windows, rate=self.rate))

    async def on_frame(self, msg: Msg) -> None:
        try:
            if self.error is None:
                pcm = decode_pcm(msg.data, self.info.format, self.info.channels)
                await self._embed(self.cutter.push(self.resampler.process(pcm)))
        except Exception as exc:
            self.error = f"frame processing failed: {exc}"
            log.warning("session_frame_failed session=%s error=%s", self.info.session_id, exc)
        async with self.progress:
            self.processed_seq = msg.metadata.sequence.stream
            self.progress.notify_all()

    def release(self) -> None:
        """The session is over here: free its audio state now. (The bus client can keep this
        object alive a while after unsubscribing; its resampler held 16 MB.)"""
        self.error = self.error or "session closed"
        self.resampler.close()
        self.cutter = WindowCutter(self.cutter.window, self.cutter.hop, self.cutter.padding)

    async def caught_up(self, seq: int, timeout: float = 60.0) -> None:
        async with self.progress:
            try:
                await asyncio.wait_for(
                    self.progress.wait_for(lambda: self.processed_seq >= seq), timeout
                )
            except TimeoutError:
                raise BusTimeout(
                    f"session {self.info.session_id}: frames not processed within {timeout}s"
                ) from None

    async def finish(self) -> np.ndarray | None:
        """Flush the resampler, embed the tail window; the track vector (None if no audio)."""
        if self.error is not None:
            raise InsightError(self.error)
        await self._embed(self.cutter.push(self.resampler.process(np.zeros(0), last=True)))
        tail = self.cutter.tail()
        if tail is not None:
            await self._embed(tail[None, :])
        if not self.vectors:
            return None
        return track_vector(np.stack(self.vectors))
