"""Streaming sessions that survive a worker.

Frames are published to JetStream (``insight.audio.<session_id>``) by whichever worker the
request reaches; session state lives in the ``insight_sessions`` KV bucket. The worker that
started a session (its owner) follows the session's subject with an ordered consumer and embeds
windows as they fill, so it holds at most a window of audio. ``end`` reaching another worker is
forwarded to the owner; if the owner is gone, that worker adopts the session by replaying its
frames from the stream, and the vector is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import msgpack
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DeliverPolicy
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from insight.bus import subjects
from insight.bus.connection import flush_subscriptions
from insight.bus.streams import sessions_bucket
from insight.codec import pack, unpack
from insight.errors import (
    BadRequest,
    BusTimeout,
    Conflict,
    InsightError,
    NotFound,
    PayloadTooLarge,
)
from insight.inference.audio import decode_pcm
from insight.ingest.audio_log import append_audio
from insight.ingest.session_state import (
    LiveSession,
    SessionInfo,
    already_stored,
    check_session_id,
    track_key,
)
from insight.metrics import SESSIONS
from insight.schemas import (
    AbortResponse,
    EndStreamRequest,
    EndStreamResponse,
    FramesRequest,
    IngestMetadata,
    SessionRef,
    SessionStatus,
    StartStreamRequest,
    StartStreamResponse,
    StreamStatusResponse,
)
from insight.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from insight.config import AudioSettings, StreamSettings
    from insight.library import Library
    from insight.state import ModelSlot, StoreSlot

log = logging.getLogger("insight.sessions")


class SessionManager:
    def __init__(
        self,
        cfg: StreamSettings,
        audio: AudioSettings,
        loaded: ModelSlot,
        stores: StoreSlot,
        library: Library,
        nc: NATS,
        js: JetStreamContext,
        worker_id: str,
        replicas: int = 1,
    ) -> None:
        self.cfg, self.audio, self.loaded, self.stores = cfg, audio, loaded, stores
        self.replicas = replicas  # of the sessions bucket (INSIGHT_NATS__REPLICAS)
        self.library, self.nc, self._js, self.worker_id = library, nc, js, worker_id
        self.live: dict[str, LiveSession] = {}
        self.kv: KeyValue | None = None
        self._subs: list[Any] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _serial(self, session_id: str) -> AsyncIterator[None]:
        """Frames, end and abort of one session run one at a time, in arrival order (an
        asyncio lock is FIFO): concurrent posts no longer overwrite each other's count."""
        lock, users = self._locks.get(session_id, (asyncio.Lock(), 0))
        self._locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def start(self) -> None:
        nc = self.nc
        self.kv = await sessions_bucket(self.js, self.replicas)
        wid = self.worker_id
        self._subs = [
            await nc.subscribe(subjects.worker_subject(wid, "end"), cb=self._on_forwarded_end),
            await nc.subscribe(subjects.worker_subject(wid, "abort"), cb=self._on_forwarded_abort),
        ]
        await flush_subscriptions(nc)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait([self._sweeper])
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for live in list(self.live.values()):
            await self._drop_local(live.info.session_id)

    # --- KV ----------------------------------------------------------------------------

    async def _get(self, session_id: str) -> SessionInfo | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(session_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return SessionInfo(**msgpack.unpackb(entry.value))

    async def _put(self, info: SessionInfo) -> None:
        assert self.kv is not None
        # msgpack doubles: the API's float32 would round timestamps to 128 s
        await self.kv.put(info.session_id, msgpack.packb(asdict(info)))

    async def _require(self, session_id: str, *, active: bool = True) -> SessionInfo:
        info = await self._get(check_session_id(session_id))
        if info is None:
            raise NotFound(f"Session {session_id} not found")
        if active and info.status != SessionStatus.ACTIVE:
            raise Conflict(f"Session {session_id} is {info.status}; start a new session")
        return info

    async def _active_infos(self) -> list[SessionInfo]:
        assert self.kv is not None
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []
        infos = [await self._get(k) for k in keys if not k.startswith("track_")]
        return [i for i in infos if i is not None and i.status == SessionStatus.ACTIVE]

    # --- local ownership -----------------------------------------------------------------

    async def _adopt(self, info: SessionInfo) -> LiveSession:
        """Own a session here: follow its frames from the first one."""
        live = LiveSession(info, self.loaded, self.audio)
        self.live[info.session_id] = live
        live.sub = await self.js.subscribe(
            subjects.audio_subject(info.session_id),
            cb=live.on_frame,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        SESSIONS.set(len(self.live))
        return live

    async def _drop_local(self, session_id: str) -> None:
        live = self.live.pop(session_id, None)
        if live is not None:
            live.release()
            if live.sub is not None:
                with contextlib.suppress(Exception):
                    await live.sub.unsubscribe()
        SESSIONS.set(len(self.live))

    async def _close(self, info: SessionInfo, status: SessionStatus) -> None:
        """Mark ended, drop local state and purge its frames from the stream."""
        info.status = status.value
        info.last_activity = time.time()
        await self._put(info)
        await self._drop_local(info.session_id)
        with contextlib.suppress(Exception):
            await self.js.purge_stream(
                subjects.AUDIO_STREAM, subject=subjects.audio_subject(info.session_id)
            )
        assert self.kv is not None
        with contextlib.suppress(Exception):
            entry = await self.kv.get(track_key(info.track_id))
            if entry.value and entry.value.decode() == info.session_id:
                await self.kv.delete(track_key(info.track_id))

    # --- operations ----------------------------------------------------------------------

    async def start_session(self, req: StartStreamRequest) -> StartStreamResponse:
        self.loaded.require_pool()
        self.stores.require_store()
        assert self.kv is not None
        with contextlib.suppress(KeyNotFoundError):
            entry = await self.kv.get(track_key(req.track_id))
            old = await self._get(entry.value.decode()) if entry.value else None
            if old is not None and old.status == SessionStatus.ACTIVE:
                if not req.replace_existing:
                    raise Conflict(f"Session already exists for track: {req.track_id}")
                await self.abort(SessionRef(session_id=old.session_id))
        if len(await self._active_infos()) >= self.cfg.max_sessions:
            raise InsightError(
                f"too many streaming sessions (max {self.cfg.max_sessions}); end or abort one, "
                "or raise INSIGHT_STREAM__MAX_SESSIONS",
                code="TOO_MANY_SESSIONS",
                status=429,
            )
        info = SessionInfo(
            session_id=str(uuid.uuid4()),
            track_id=req.track_id,
            metadata=req.metadata.model_dump(),
            format=req.format.value,
            sample_rate=req.sample_rate,
            channels=req.channels,
            owner=self.worker_id,
        )
        await self._put(info)
        await self.kv.put(track_key(req.track_id), info.session_id.encode())
        live = await self._adopt(info)
        log.info("session_started session=%s track=%s", info.session_id, info.track_id)
        return StartStreamResponse(session_id=info.session_id, window_samples=live.cutter.window)

    async def frames(self, req: FramesRequest) -> tuple[float, int]:
        async with self._serial(check_session_id(req.session_id)):
            return await self._frames(req)

    async def _frames(self, req: FramesRequest) -> tuple[float, int]:
        info = await self._require(req.session_id)
        # a body the bridge split is checked whole on its first chunk, so that it is refused
        # before any of it is stored
        size = max(len(req.data), req.remaining_bytes or 0)
        if size % info.frame_bytes or len(req.data) % info.frame_bytes:
            raise BadRequest(
                f"Invalid audio: {size} bytes is not a whole number of "
                f"{info.frame_bytes}-byte frames ({info.format}, {info.channels} channel(s))"
            )
        decode_pcm(req.data, info.format, info.channels)  # reject NaN/inf before storing
        seen = already_stored(info, req.offset, len(req.data))
        data = req.data[seen:]
        added = (size - seen) / (info.frame_bytes * info.sample_rate)
        if info.seconds + added > self.cfg.max_buffered_s:
            raise PayloadTooLarge(
                f"session {info.session_id} would exceed {self.cfg.max_buffered_s:.0f} s of "
                "audio (INSIGHT_STREAM__MAX_BUFFERED_S); end it and start a new one"
            )
        await append_audio(self.js, info, data)
        info.last_activity = time.time()
        live = self.live.get(info.session_id)
        if live is not None:
            await live.caught_up(info.last_seq)
            info.windows_completed = len(live.vectors)
        await self._put(info)
        return info.seconds, info.windows_completed

    async def end(self, req: EndStreamRequest) -> EndStreamResponse:
        async with self._serial(check_session_id(req.session_id)):
            return await self._end(req)

    async def _end(self, req: EndStreamRequest) -> EndStreamResponse:
        info = await self._require(req.session_id)
        self.loaded.require_pool()
        if info.owner != self.worker_id and info.session_id not in self.live:
            forwarded = await self._forward(info, "end", req)
            if forwarded is not None:
                return EndStreamResponse.model_validate(forwarded)
        return await self._finish(info, req)

    async def _forward(self, info: SessionInfo, action: str, req: Any) -> Any | None:
        """Ask the owner; None when the owner is gone (then this worker adopts the session)."""
        try:
            msg = await self.nc.request(
                subjects.worker_subject(info.owner, action), pack(req), timeout=120
            )
        except NoRespondersError:
            log.warning("session_adopted session=%s dead_owner=%s", info.session_id, info.owner)
            return None
        except NatsTimeout:
            raise BusTimeout(f"owner of session {info.session_id} did not answer") from None
        body = unpack(msg.data)
        if isinstance(body, dict) and "error" in body:
            raise InsightError.from_body(body, int(body.get("status", 500)))
        return body

    async def _finish(self, info: SessionInfo, req: EndStreamRequest) -> EndStreamResponse:
        live = self.live.get(info.session_id) or await self._adopt(info)
        await live.caught_up(info.last_seq)
        info.status = SessionStatus.FINALIZING.value
        await self._put(info)
        try:
            min_s = req.min_duration_s
            vector = await live.finish() if info.seconds >= min_s and info.bytes_received else None
            meta = IngestMetadata.model_validate(info.metadata)
            stored = await self.library.ingest_analysis(
                info.track_id, meta, vector, source="stream", store=req.store
            )
        except Exception:
            await self._close(info, SessionStatus.ERROR)
            raise
        await self._close(info, SessionStatus.COMPLETED)
        log.info("session_ended session=%s windows=%d", info.session_id, len(live.vectors))
        return EndStreamResponse(
            track_id=info.track_id,
            duration_s=info.seconds,
            windows_processed=len(live.vectors) if vector is not None else 0,
            text_stored=stored.text_stored,
            audio_stored=stored.audio_stored,
            primary_mood=stored.primary_mood,
        )

    async def status(self, req: SessionRef) -> StreamStatusResponse:
        info = await self._require(req.session_id, active=False)
        live = self.live.get(info.session_id)
        return StreamStatusResponse(
            session_id=info.session_id,
            track_id=info.track_id,
            status=SessionStatus(info.status),
            buffered_seconds=info.seconds,
            windows_completed=len(live.vectors) if live else info.windows_completed,
            age_seconds=time.time() - info.created_at,
        )

    async def abort(self, req: SessionRef) -> AbortResponse:
        async with self._serial(check_session_id(req.session_id)):
            return await self._abort(req)

    async def _abort(self, req: SessionRef) -> AbortResponse:
        info = await self._require(req.session_id, active=False)
        if info.status == SessionStatus.ACTIVE:
            await self._close(info, SessionStatus.ABORTED)
            if info.owner != self.worker_id:
                await self.nc.publish(
                    subjects.worker_subject(info.owner, "abort"), info.session_id.encode()
                )
        return AbortResponse(session_id=info.session_id, aborted=True)

    # --- owner side of forwarded requests ------------------------------------------------

    async def _on_forwarded_end(self, msg: Msg) -> None:
        try:
            req = EndStreamRequest.model_validate(unpack(msg.data))
            async with self._serial(check_session_id(req.session_id)):
                info = await self._require(req.session_id)
                reply: Any = (await self._finish(info, req)).model_dump()
        except InsightError as err:
            reply = {**err.body(), "status": err.status}
        await msg.respond(pack(reply))

    async def _on_forwarded_abort(self, msg: Msg) -> None:
        await self._drop_local(msg.data.decode())

    # --- idle sessions -------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        interval = min(30.0, self.cfg.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("session_sweep_failed error=%s", exc)

    async def sweep(self) -> int:
        """Abort sessions idle for longer than the timeout (twice that for other owners')."""
        now, n = time.time(), 0
        for info in await self._active_infos():
            limit = self.cfg.idle_timeout_s * (1 if info.owner == self.worker_id else 2)
            if now - info.last_activity > limit:
                await self._close(info, SessionStatus.ABORTED)
                log.info("session_timed_out session=%s", info.session_id)
                n += 1
        return n
