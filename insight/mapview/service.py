"""The map service (``app.services.map``): one layout, kept up to date without moving points.

The first call lays out the whole library (``layout.fit``, in a thread). Later calls check the
collection counts; when they changed (or a minute passed, or ``refresh`` is asked) the service
lists the library's ids, places the new tracks with the stored layout (nothing else moves) and
forgets the deleted ones. When more than ``RELAYOUT_SHARE`` of the map is new since the last
full layout, a full layout is recomputed in the background; the old one keeps answering until
it is done. The layout and the placed points survive restarts (``<data_dir>/map/``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from insight.mapview.layout import Layout, fit
from insight.playlists.schemas import MapRequest, MapResponse
from insight.playlists.vectors import first_str, library_vectors, number
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore, scroll_pages

if TYPE_CHECKING:
    from pathlib import Path

    from insight.state import ModelSlot, StoreSlot
    from insight.tasks import TaskSet

log = logging.getLogger("insight.map")

RELAYOUT_SHARE = 0.2
RECHECK_S = 60.0
PAGE = 4096


@dataclass
class Points:
    ids: list[str] = field(default_factory=list)
    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float32))
    payloads: list[dict[str, Any]] = field(default_factory=list)
    _cols: list[list[Any]] | None = None

    def columns(self) -> list[list[Any]]:
        """name, artist, mood, genre, valence, arousal: one list each (built once)."""
        if self._cols is None:
            rows = [columns(p) for p in self.payloads]
            self._cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 6
        return self._cols


def columns(p: dict[str, Any]) -> tuple[str, str | None, str | None, str | None, Any, Any]:
    return (
        str(p.get("name") or ""),
        first_str(p, "artists"),
        first_str(p, "primary_mood"),
        first_str(p, "genres"),
        number(p, "valence"),
        number(p, "arousal"),
    )


async def payloads_of(store: VectorStore, model_id: str | None) -> dict[str, dict[str, Any]]:
    """Every track's merged payload (no vectors), limited to one model's vectors."""
    where = {"model_id": model_id} if model_id else None
    out: dict[str, dict[str, Any]] = {}
    for coll in (TRACKS_AUDIO, TRACKS_TEXT):  # text last: its payload wins
        async for page in scroll_pages(store, coll, limit=PAGE, where=where):
            for pt in page:
                out[pt.key] = {**out.get(pt.key, {}), **pt.payload}
    return out


class MapService:
    def __init__(
        self, data_dir: Path, loaded: ModelSlot, stores: StoreSlot, tasks: TaskSet, seed: int = 0
    ) -> None:
        self.loaded, self.stores, self.tasks = loaded, stores, tasks
        self.seed = seed
        self.dir = data_dir / "map"
        self.layout: Layout | None = None
        self.points = Points()
        self.version = 0
        self.computed_at = 0
        self.laid_out = 0  # tracks at the last full layout
        self._counts: tuple[int, ...] = ()
        self._checked = 0.0
        self._lock = asyncio.Lock()
        self._relayout: asyncio.Task[Any] | None = None

    @property
    def recomputing(self) -> bool:
        return self._relayout is not None and not self._relayout.done()

    def _model_id(self) -> str | None:
        return self.loaded.model_id

    async def page(self, req: MapRequest) -> MapResponse:
        await self.ensure(req.refresh)
        p = self.points
        end = min(req.offset + req.limit, len(p.ids))
        sl = slice(req.offset, end)
        cols = [c[sl] for c in p.columns()]
        xy = p.xy[sl]
        return MapResponse(
            total=len(p.ids),
            offset=req.offset,
            version=self.version,
            computed_at=self.computed_at,
            recomputing=self.recomputing,
            track_ids=p.ids[sl],
            x=np.round(xy[:, 0].astype(np.float64), 5).tolist(),
            y=np.round(xy[:, 1].astype(np.float64), 5).tolist(),
            names=cols[0],
            artists=cols[1],
            moods=cols[2],
            genres=cols[3],
            valence=cols[4],
            arousal=cols[5],
        )

    async def ensure(self, force: bool = False) -> None:
        store = self.stores.require_store()
        async with self._lock:
            if self.layout is None:
                await asyncio.to_thread(self._load)
            counts = (await store.count(TRACKS_AUDIO), await store.count(TRACKS_TEXT))
            stale = time.monotonic() - self._checked > RECHECK_S
            if self.layout is not None and not force and counts == self._counts and not stale:
                return
            await self._sync(store)
            self._counts, self._checked = counts, time.monotonic()

    async def _sync(self, store: VectorStore) -> None:
        fits = self.layout is not None and self.layout.landmarks.shape[1] == store.dim
        if self.layout is None or not self.points.ids or not fits:
            await self._full(store)  # reads every vector once (nothing when the store is empty)
            return
        payloads = await payloads_of(store, self._model_id())
        known = {t: i for i, t in enumerate(self.points.ids)}
        keep = [i for i, t in enumerate(self.points.ids) if t in payloads]
        new = sorted(t for t in payloads if t not in known)
        xy = self.points.xy[keep]
        ids = [self.points.ids[i] for i in keep]
        if new:
            lib = await library_vectors(store, self._model_id(), new)
            layout = self.layout
            xy = np.concatenate([xy, await asyncio.to_thread(layout.place, lib.matrix)])
            ids += lib.ids
        self.points = Points(ids, xy, [payloads[t] for t in ids])
        if new or len(keep) != len(known):
            await asyncio.to_thread(self._save_points)
        if (
            len(ids) - self.laid_out > RELAYOUT_SHARE * max(self.laid_out, 1)
            and not self.recomputing
        ):
            self._relayout = self.tasks.spawn(self._background_full(), name="map-relayout")

    async def _background_full(self) -> None:
        """A new layout computed while the old one answers; swapped in under the lock (the
        next check places what was added meanwhile)."""
        done = await self._compute(self.stores.require_store())
        if done is not None:
            async with self._lock:
                await self._apply(*done)
                self._checked = 0.0

    async def _full(self, store: VectorStore) -> None:
        """Lay out the whole library from scratch (new landmarks); the caller holds the lock."""
        done = await self._compute(store)
        if done is not None:
            await self._apply(*done)

    async def _compute(self, store: VectorStore) -> tuple[Layout, Points] | None:
        lib = await library_vectors(store, self._model_id())
        if not len(lib):
            return None
        started = time.perf_counter()
        layout = await asyncio.to_thread(fit, lib.matrix, self.seed)
        xy = await asyncio.to_thread(layout.place, lib.matrix)
        log.info("map_laid_out tracks=%d seconds=%.1f", len(lib), time.perf_counter() - started)
        return layout, Points(lib.ids, xy, lib.payloads)

    async def _apply(self, layout: Layout, points: Points) -> None:
        self.layout, self.points = layout, points
        self.version += 1
        self.computed_at = int(time.time())
        self.laid_out = len(points.ids)
        await asyncio.to_thread(self._save)

    # --- persistence -------------------------------------------------------------------

    def _save(self) -> None:
        assert self.layout is not None
        self.layout.save(self.dir / "layout.npz")
        self._save_points()

    def _save_points(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "points.tmp.npz"
        meta = np.array([self.version, self.computed_at, self.laid_out])
        np.savez(tmp, ids=np.array(self.points.ids, dtype=str), xy=self.points.xy, meta=meta)
        tmp.replace(self.dir / "points.npz")

    def _load(self) -> None:
        lay, pts = self.dir / "layout.npz", self.dir / "points.npz"
        if not (lay.exists() and pts.exists()):
            return
        try:
            layout = Layout.load(lay)
            with np.load(pts) as z:
                ids, xy, meta = [str(t) for t in z["ids"]], z["xy"], z["meta"]
        except Exception as exc:  # a damaged file: lay out again
            log.warning("map_load_failed error=%s", exc)
            return
        self.layout = layout
        self.points = Points(ids, xy, [{} for _ in ids])
        self.version, self.computed_at, self.laid_out = (int(v) for v in meta)
