"""Streaming ingestion: start a session, send PCM frames, end (store) or abort it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import NotReady
from insight.ingest.sessions import SessionManager
from insight.schemas import (
    AbortResponse,
    EndStreamRequest,
    EndStreamResponse,
    FramesRequest,
    FramesResponse,
    SessionRef,
    StartStreamRequest,
    StartStreamResponse,
    StreamStatusResponse,
)

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="stream")


def sessions(app: App) -> SessionManager:
    manager = app.services.sessions
    if manager is None:
        raise NotReady("stream sessions run only in a worker connected to the bus")
    return manager


@router.endpoint("stream.start", "POST", "/stream/start", errors=(409,))
async def start(app: App, req: StartStreamRequest) -> StartStreamResponse:
    """Start an ingestion session for a track (replaces a running one unless told not to)."""
    return await sessions(app).start_session(req)


@router.endpoint(
    "stream.frames",
    "POST",
    "/stream/{session_id}/frames",
    body="raw",
    errors=(404, 409),
    query=("offset",),
)
async def frames(app: App, req: FramesRequest) -> FramesResponse:
    """Send raw PCM frames (the format given at start); windows are embedded as they fill."""
    seconds, windows = await sessions(app).frames(req)
    return FramesResponse(buffered_seconds=seconds, windows_completed=windows)


@router.endpoint(
    "stream.end", "POST", "/stream/{session_id}/end", body="optional", errors=(404, 409)
)
async def end(app: App, req: EndStreamRequest) -> EndStreamResponse:
    """End the session: audio vector (mean of windows), text vector, mood; store both."""
    return await sessions(app).end(req)


@router.endpoint("stream.status", "GET", "/stream/{session_id}/status", errors=(404,))
async def status(app: App, req: SessionRef) -> StreamStatusResponse:
    """Session status: seconds received, windows embedded, age."""
    return await sessions(app).status(req)


@router.endpoint("stream.abort", "DELETE", "/stream/{session_id}", status=204, errors=(404,))
async def abort(app: App, req: SessionRef) -> AbortResponse:
    """Abort a session: its audio is discarded."""
    return await sessions(app).abort(req)
