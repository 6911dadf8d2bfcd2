"""Song paths, trait mixes and playlists (cluster playlists, stored mixes and paths)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.playlists.mix import build_mix
from insight.playlists.path import song_path
from insight.playlists.schemas import (
    ClusterRequest,
    ClusterResponse,
    M3u8Response,
    MixRequest,
    MixResponse,
    PathRequest,
    PathResponse,
    PathStep,
    PlaylistRef,
    PlaylistResponse,
    PlaylistsResponse,
)
from insight.playlists.service import CLUSTER_SCHEDULE
from insight.schemas import DeletedResponse, Empty, SearchResult
from insight.taste.tracks import metadata_of

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="playlists")


@router.endpoint("tracks.path", "POST", "/tracks/path", errors=(400, 404, 503))
async def path(app: App, req: PathRequest) -> PathResponse:
    """A song path from A to B: evenly spaced steps, each with its distance to the line."""
    req = req.model_copy(update={"filter": app.in_model_space(req.filter)})
    steps = await song_path(app.require_store(), req)
    out = [
        PathStep(
            position=i,
            track_id=s.view.track_id,
            progress=s.progress,
            target_similarity=s.target_similarity,
            line_distance=s.line_distance,
            metadata=metadata_of(s.view.track_id, s.view.payload),
        )
        for i, s in enumerate(steps)
    ]
    pid = None
    if req.save:
        name = req.name or f"{out[0].metadata.name or req.start_id} → {out[-1].metadata.name}"
        row = await app.services.playlists.save(
            "path", name, f"song path in {len(out)} steps", [s.track_id for s in out]
        )
        pid = row.playlist_id
    return PathResponse(steps=out, count=len(out), playlist_id=pid)


@router.endpoint("mixes.build", "POST", "/mixes", errors=(400, 404, 503))
async def mix(app: App, req: MixRequest) -> MixResponse:
    """A mix from traits (moods, V/A region, genres, tempo, prompt) for a user, diverse."""
    ranked = await build_mix(app, req)
    tracks = [
        SearchResult(
            track_id=r.view.track_id,
            score=r.score,
            metadata=metadata_of(r.view.track_id, r.view.payload),
        )
        for r in ranked
    ]
    pid = None
    if req.save:
        traits = req.moods + req.genres + ([f'"{req.prompt}"'] if req.prompt else [])
        name = req.name or ("Mix: " + ", ".join(traits) if traits else "Mix")
        row = await app.services.playlists.save(
            "mix", name, f"{len(tracks)} tracks", [t.track_id for t in tracks]
        )
        pid = row.playlist_id
    return MixResponse(tracks=tracks, count=len(tracks), playlist_id=pid)


@router.endpoint("playlists.cluster", "POST", "/playlists/clusters", errors=(400, 503))
async def clusters(app: App, req: ClusterRequest) -> ClusterResponse:
    """Group the library into K named playlists with stable ids; optional scheduled refresh."""
    return await app.services.playlists.cluster(req)


@router.endpoint("playlists.list", "GET", "/playlists")
async def list_playlists(app: App, req: Empty) -> PlaylistsResponse:
    """Every stored playlist (cluster playlists, saved mixes and paths)."""
    svc = app.services.playlists
    sched = await svc.db.schedule(CLUSTER_SCHEDULE)
    return PlaylistsResponse(
        playlists=await svc.playlists(),
        refresh_interval_s=sched.interval_s if sched else 0,
        next_refresh_at=sched.last_run + sched.interval_s if sched else None,
    )


@router.endpoint("playlists.get", "GET", "/playlists/{playlist_id}", errors=(400, 404))
async def get_playlist(app: App, req: PlaylistRef) -> PlaylistResponse:
    """One playlist with its tracks in order."""
    return await app.services.playlists.get(req.playlist_id)


@router.endpoint("playlists.delete", "DELETE", "/playlists/{playlist_id}", errors=(400,))
async def delete_playlist(app: App, req: PlaylistRef) -> DeletedResponse:
    """Delete a playlist (announced as deleted on the bus)."""
    gone = await app.services.playlists.delete(req.playlist_id)
    return DeletedResponse(
        deleted=gone, message=f"{'Deleted' if gone else 'No'} playlist {req.playlist_id}"
    )


@router.endpoint("playlists.m3u8", "GET", "/playlists/{playlist_id}/m3u8", errors=(400, 404))
async def export_m3u8(app: App, req: PlaylistRef) -> M3u8Response:
    """The playlist as M3U8 text: file paths where known, track uris otherwise."""
    return await app.services.playlists.m3u8(req.playlist_id)
