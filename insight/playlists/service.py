"""The playlist service (``app.services.playlists``): stored playlists, cluster runs, the
scheduled refresh, M3U8 export and the ``playlist updated`` announcement."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from insight.bus import subjects
from insight.codec import pack
from insight.errors import BadRequest, NotFound
from insight.playlists import cluster
from insight.playlists.db import PlaylistDb, Row
from insight.playlists.schemas import (
    ClusterRequest,
    ClusterResponse,
    M3u8Response,
    PlaylistResponse,
    PlaylistSummary,
)
from insight.playlists.vectors import library_vectors
from insight.schemas import TrackMetadata
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NATS

    from insight.state import ModelSlot, StoreSlot
    from insight.tasks import TaskSet

log = logging.getLogger("insight.playlists")

CLUSTER_SCHEDULE = "clusters"
MAX_SLEEP_S = 3600.0


def summary(row: Row) -> PlaylistSummary:
    return PlaylistSummary.model_validate(row, from_attributes=True)


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


class PlaylistService:
    def __init__(
        self,
        data_dir: Path,
        loaded: ModelSlot,
        stores: StoreSlot,
        tasks: TaskSet,
        nc: NATS | None = None,
    ) -> None:
        self.loaded, self.stores, self.tasks, self.nc = loaded, stores, tasks, nc
        self.db = PlaylistDb(data_dir / "playlists.db")
        self._run_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._opened = False

    async def open(self) -> None:
        if self._opened:
            return
        await self.db.open()
        self._opened = True
        self.tasks.spawn(self._refresh_loop(), name="playlists-refresh")

    async def close(self) -> None:
        await self.db.close()

    # --- stored playlists --------------------------------------------------------------

    async def save(
        self, kind: str, name: str, description: str, track_ids: list[str], pid: str | None = None
    ) -> Row:
        row = await self.db.save(pid or new_id(kind), kind, name, description, track_ids)
        await self.announce(row, "updated")
        return row

    async def playlists(self, kind: str | None = None) -> list[PlaylistSummary]:
        return [summary(r) for r in await self.db.playlists(kind)]

    async def get(self, playlist_id: str) -> PlaylistResponse:
        found = await self.db.get(playlist_id)
        if found is None:
            raise NotFound(f"no playlist {playlist_id!r}")
        row, ids = found
        meta = await self.metadata(ids)
        return PlaylistResponse(
            playlist=summary(row),
            track_ids=ids,
            tracks=[meta.get(t) or TrackMetadata(track_id=t) for t in ids],
        )

    async def delete(self, playlist_id: str) -> bool:
        found = await self.db.get(playlist_id)
        if found is None or not await self.db.delete(playlist_id):
            return False
        await self.announce(found[0], "deleted")
        return True

    async def metadata(self, ids: list[str]) -> dict[str, TrackMetadata]:
        """Stored metadata of tracks (text payload over audio payload); missing ones absent."""
        store = self.stores.store
        if store is None or not ids:
            return {}
        audio = {p.key: p.payload for p in await store.get(TRACKS_AUDIO, ids)}
        text = {p.key: p.payload for p in await store.get(TRACKS_TEXT, ids)}
        out = {}
        for t in ids:
            if t in audio or t in text:
                merged = {**audio.get(t, {}), **{k: v for k, v in text.get(t, {}).items() if v}}
                out[t] = TrackMetadata.model_validate({**merged, "track_id": t})
        return out

    async def m3u8(self, playlist_id: str) -> M3u8Response:
        """Extended M3U in UTF-8: the file path where the watcher knows it, the uri otherwise."""
        got = await self.get(playlist_id)
        lines = ["#EXTM3U", f"#PLAYLIST:{got.playlist.name}"]
        for m in got.tracks:
            who = ", ".join(m.artists)
            title = f"{who} - {m.name}" if who and m.name else (m.name or m.track_id)
            lines += [f"#EXTINF:-1,{title}", m.file_path or m.track_id]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", got.playlist.name).strip("-").lower() or "playlist"
        return M3u8Response(
            playlist_id=playlist_id, filename=f"{slug}.m3u8", content="\n".join(lines) + "\n"
        )

    async def announce(self, row: Row, action: str) -> None:
        """``insight.notify.playlist.updated`` (core NATS, best effort) for the MA side."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        body = {
            "playlist_id": row.playlist_id,
            "kind": row.kind,
            "name": row.name,
            "action": action,
            "track_count": row.track_count,
            "updated_at": row.updated_at,
        }
        try:
            await nc.publish(subjects.PLAYLIST_UPDATED, pack(body))
        except Exception as exc:
            log.warning("playlist_announce_failed id=%s error=%s", row.playlist_id, exc)

    # --- cluster playlists -------------------------------------------------------------

    async def cluster(self, req: ClusterRequest) -> ClusterResponse:
        async with self._run_lock:
            out = await self._cluster(req)
        await self.db.set_schedule(
            CLUSTER_SCHEDULE, req.model_dump(exclude={"refresh_interval_s"}), req.refresh_interval_s
        )
        self._wake.set()
        return out

    async def _cluster(self, req: ClusterRequest) -> ClusterResponse:
        lib = await library_vectors(self.stores.require_store(), self.loaded.model_id)
        if len(lib) < req.clusters:
            raise BadRequest(
                f"the library has {len(lib)} tracks with vectors: too few for "
                f"{req.clusters} playlists"
            )
        old = await self.db.members("cluster")
        labels, cents = await asyncio.to_thread(self._fit, lib.matrix, lib.ids, old, req)
        mapping = cluster.match_ids(labels, lib.ids, old, req.clusters)
        kept = cluster.kept_share(lib.ids, labels, mapping, old) if old else None
        rows = []
        names: dict[str, int] = {}
        for j in range(cents.shape[0]):
            idx = np.flatnonzero(labels == j)
            if idx.size == 0:
                continue
            idx = idx[np.argsort(-(lib.matrix[idx] @ cents[j]), kind="stable")]
            name, desc = cluster.name_of([lib.payloads[i] for i in idx])
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:
                name = f"{name} {names[name]}"
            ids = [lib.ids[i] for i in idx]
            rows.append(await self.save("cluster", name, desc, ids, mapping.get(j)))
        reused = {r.playlist_id for r in rows}
        for pid in old:
            if pid not in reused:
                await self.delete(pid)
        log.info("clusters_built playlists=%d tracks=%d kept=%s", len(rows), len(lib), kept)
        return ClusterResponse(
            playlists=[summary(r) for r in rows], tracks=len(lib), kept_share=kept
        )

    @staticmethod
    def _fit(
        x: np.ndarray, ids: list[str], old: dict[str, list[str]], req: ClusterRequest
    ) -> tuple[np.ndarray, np.ndarray]:
        init = cluster.warm_start(x, ids, old, req.clusters) if old else None
        return cluster.kmeans(x, req.clusters, req.seed, init)

    async def _refresh_loop(self) -> None:
        """Re-cluster when the stored schedule says so; woken early when it changes."""
        while True:
            sched = await self.db.schedule(CLUSTER_SCHEDULE)
            wait = MAX_SLEEP_S
            if sched is not None:
                due = sched.last_run + sched.interval_s - time.time()
                if due <= 0:
                    await self._scheduled_run(sched.params)
                    await self.db.mark_run(CLUSTER_SCHEDULE)
                    continue
                wait = min(due, MAX_SLEEP_S)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _scheduled_run(self, params: dict[str, Any]) -> None:
        try:
            async with self._run_lock:
                await self._cluster(ClusterRequest.model_validate(params))
        except Exception as exc:  # the next run tries again
            log.warning("scheduled_clusters_failed error=%s", exc)
