"""A staged model switch: the next model fills its own space while the loaded one serves.

Loading a model whose space differs from the loaded one's, while that space holds vectors,
starts a migration (the default of ``POST /models/{id}/load``; ``"switch": "now"`` switches at
once, as before). Meanwhile:

- both models are in memory: the next one has an inference pool of its own;
- every query (search, similar, radio, recommend, mood, map, ...) keeps using the serving
  model and its space: the serving slots are not touched until the end;
- text vectors the next space lacks are embedded again from the stored metadata; known audio
  files are analysed again by the folder watcher with the next model, into its space;
- every write (events, embed-text, stream ends, scans, deletes) goes to the serving space and,
  through ``Library.mirror``, to the next one: text embedded by the next model, watched files
  queued for it; an audio vector with no file (a stream, ``/tracks/upsert``) cannot be made
  again, is reported as unrecoverable and stays reachable in the old space;
- ``GET /models/migration`` shows phase, counts and ETA; ``DELETE /models/migration`` cancels
  it (the old model keeps serving; what the next space got stays in it).

When everything is done the serving slot switches to the next model and its space in one step
and the old model is released; the old space stays until ``DELETE /storage/spaces/{space}``.
``migration.json`` in the data dir records the target, so a restart mid-migration starts it
again; the next space keeps what it got, only what it lacks is done again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from insight.ingest.links import heard
from insight.library import Library, TextItem, set_file_path
from insight.mood.classifier import MoodClassifier
from insight.schemas import HashedMetadata, IngestMetadata, MigrationStatus
from insight.state import ModelSlot, StoreSlot
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from insight.inference.model import EmbeddingModel
    from insight.storage.base import VectorStore
    from insight.watcher.service import WatcherService

log = logging.getLogger("insight.models.migration")

BATCH = 64
PAGE = 512
WAIT_S = 0.2
SHOWN = 100  # unrecoverable ids listed in the status
RELINK_PASSES = 3


def text_item(p: Point, source: str = "reembed") -> TextItem:
    """A stored text point as what re-embeds it: its payload is the track's metadata."""
    return TextItem(
        track_id=p.key,
        metadata=HashedMetadata.model_validate(
            {k: v for k, v in p.payload.items() if v is not None}
            | {"name": p.payload.get("name") or p.key}
        ),
        source=p.payload.get("source") or source,
        file_path=p.payload.get("file_path"),
    )


class Migration:
    """One staged switch to ``model``: its slots, its library and its progress."""

    def __init__(
        self,
        model: EmbeddingModel,
        space: str,
        source: VectorStore,
        target: VectorStore,
        serving: ModelSlot,
        watcher: WatcherService | None,
    ) -> None:
        self.model, self.space, self.source, self.serving = model, space, source, serving
        self.watcher = watcher
        self.loaded = ModelSlot()  # the next model, beside the serving one
        self.stores = StoreSlot()
        self.stores.store, self.stores.error = target, None
        self.mood = MoodClassifier(self.loaded)
        self.library = Library(self.loaded, self.stores, self.mood)  # no announcements
        self.from_model_id = serving.model_id
        self.from_space = ""
        self.phase = "text"
        self.text_total = self.text_done = self.audio_total = self.audio_done = 0
        self.made = 0  # vectors this migration made (for the ETA)
        self.lost: dict[str, None] = {}  # unrecoverable ids, once each, in the order found
        self.touched: set[str] = set()  # text keys a mirrored write changed (see _embed)
        self.failed: set[str] = set()  # text keys a mirrored write failed for (see run)
        self.step: Callable[[list[str]], Awaitable[None]] | None = None  # before each batch
        self.pending: set[str] = set()
        self.started = time.time()
        self.finished: float | None = None
        self.error: str | None = None
        self.stop = asyncio.Event()  # cancel or shutdown: loops end at their next step
        self.task: asyncio.Task[None] | None = None

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def active(self) -> bool:
        return self.phase in ("text", "audio", "switching")

    # --- progress -----------------------------------------------------------------------

    def status(self) -> MigrationStatus:
        remaining = max(0, self.text_total - self.text_done) + len(self.pending)
        elapsed = time.time() - self.started
        eta = None
        if self.active and self.made and remaining:
            eta = round(remaining * elapsed / self.made, 1)
        return MigrationStatus(
            model_id=self.model_id,
            from_model_id=self.from_model_id,
            space=self.space or "default",
            from_space=self.from_space or "default",
            phase=self.phase,  # type: ignore[arg-type]
            text_total=self.text_total,
            text_done=self.text_done,
            audio_total=self.audio_total,
            audio_done=self.audio_done,
            unrecoverable=len(self.lost),
            unrecoverable_ids=list(islice(self.lost, SHOWN)),
            started_at=int(self.started),
            finished_at=int(self.finished) if self.finished else None,
            eta_s=eta,
            error=self.error,
        )

    def analysed(self, track_id: str, ok: bool | None) -> None:
        """The watcher's word on a file it analysed with the next model (Target protocol);
        ``None``: its track was deleted meanwhile (neither made nor lost)."""
        if track_id not in self.pending:
            return
        self.pending.discard(track_id)
        if ok is None:
            self.audio_total -= 1
        elif ok:
            self.audio_done += 1
            self.made += 1
        else:
            self.lost[track_id] = None

    # --- writes while it runs (Library.mirror) -----------------------------------------

    async def texts(self, items: list[TextItem]) -> None:
        self.touched.update(i.track_id for i in items)
        try:
            await self.library.ingest_text(items, skip_unchanged=False)
        except Exception as exc:  # the serving write stands; made again before the switch
            self.failed.update(i.track_id for i in items)
            log.warning("migration_mirror_failed tracks=%d error=%s", len(items), exc)

    async def analysis(
        self, track_id: str, meta: HashedMetadata, source: str, file_path: str | None, audio: bool
    ) -> None:
        watcher = self.watcher
        path = Path(file_path) if audio and file_path and self.active else None
        if path is not None and watcher is not None:
            queued = watcher.analyse_into(path, track_id, self)
            if queued and track_id not in self.pending:
                self.pending.add(track_id)
                self.audio_total += 1
            if queued or track_id in self.pending:  # already queued for this migration
                return
        await self.upserted(track_id, meta, True, audio, source, file_path)

    async def upserted(
        self,
        track_id: str,
        meta: IngestMetadata,
        text: bool,
        audio: bool,
        source: str = "upsert",
        file_path: str | None = None,
    ) -> None:
        """Text embedded again by the next model; an audio vector with no file is lost."""
        if text:
            hashed = HashedMetadata.model_validate(meta.model_dump())
            await self.texts([TextItem(track_id, hashed, source, file_path)])
        if audio and track_id not in self.lost:
            self.audio_total += self.phase != "text"  # the audio phase counts it otherwise
            self.lost[track_id] = None

    async def moved(self, track_id: str, file_path: str) -> None:
        self.touched.add(track_id)  # a text batch in flight read the old path
        if (store := self.stores.store) is not None:
            await set_file_path(store, track_id, file_path)

    async def deleted(self, track_id: str, text: bool, audio: bool) -> None:
        if text:
            self.touched.add(track_id)
        try:
            await self.library.delete_track(track_id, text=text, audio=audio)
        except Exception as exc:  # settled again before the switch
            self.failed.add(track_id)
            log.warning("migration_mirror_failed track=%s error=%s", track_id, exc)

    # --- the run --------------------------------------------------------------------------

    async def run(
        self,
        switch: Callable[[Migration], Awaitable[None]],
        failed: Callable[[Migration], Awaitable[None]],
    ) -> None:
        """Text, then audio, then ``switch`` (the serving slot to the next model); ``failed``
        releases what it holds when a step raises."""
        try:
            await self._text()
            if not self.stop.is_set():
                await self._audio()
            if not self.stop.is_set():
                await self._final()
            if self.stop.is_set():
                return
            self.phase = "switching"
            await switch(self)
            self.phase, self.finished = "done", time.time()
            log.info(
                "migration_done model=%s text=%d audio=%d unrecoverable=%d",
                self.model_id,
                self.text_done,
                self.audio_done,
                len(self.lost),
            )
        except Exception as exc:
            self.phase, self.error, self.finished = "failed", str(exc), time.time()
            log.exception("migration_failed model=%s", self.model_id)
            await failed(self)

    async def _missing(self, collection: str, have_counts: bool) -> list[Point]:
        """Points of the serving space whose track the next space lacks (audio: listed once,
        the watcher queue holds them)."""
        out: list[Point] = []
        offset: str | None = None
        while not self.stop.is_set():
            page, offset = await self.source.scroll(collection, offset, PAGE)
            out.extend(await self._lacking(collection, page, have_counts))
            if offset is None or not page:
                break
        return out

    async def _lacking(self, collection: str, page: list[Point], count: bool) -> list[Point]:
        have = {
            p.key for p in await self.stores.require_store().get(collection, [p.key for p in page])
        }
        if count and collection == TRACKS_TEXT:
            self.text_done += len(have)
        elif count:
            self.audio_done += len(have)
        return [p for p in page if p.key not in have]

    async def _text(self, count: bool = True) -> None:
        """A page at a time: what the next space lacks, checked again against both spaces just
        before each batch (a track deleted or written since is not made from old metadata)."""
        if count:
            self.phase = "text"
            self.text_total = await self.source.count(TRACKS_TEXT)
        offset: str | None = None
        while not self.stop.is_set():
            page, offset = await self.source.scroll(TRACKS_TEXT, offset, PAGE)
            todo = [p.key for p in await self._lacking(TRACKS_TEXT, page, count)]
            for start in range(0, len(todo), BATCH):
                if self.stop.is_set():
                    return
                made = await self._embed(todo[start : start + BATCH])
                if count:
                    self.text_done += len(todo[start : start + BATCH])
                self.made += made
            if offset is None or not page:
                break

    async def _embed(self, keys: list[str]) -> int:
        """The text of ``keys`` from the serving space's current payloads, for those the next
        space still lacks; keys a mirrored write touched meanwhile are settled again."""
        target = self.stores.require_store()
        have = {p.key for p in await target.get(TRACKS_TEXT, keys)}
        keys = [k for k in keys if k not in have]
        if not keys:
            return 0
        self.touched.difference_update(keys)
        points = await self.source.get(TRACKS_TEXT, keys)
        if self.step is not None:
            await self.step([p.key for p in points])
        if points:
            await self.library.ingest_text([text_item(p) for p in points], skip_unchanged=False)
        await self._settle(self.touched & set(keys))
        return len(points)

    async def _settle(self, keys: set[str]) -> None:
        """The next space's text of ``keys`` made equal to the serving space's again: gone
        there, deleted here; present, embedded again from its current payload."""
        if not keys:
            return
        self.touched.difference_update(keys)
        points = await self.source.get(TRACKS_TEXT, sorted(keys))
        gone = sorted(keys - {p.key for p in points})
        target = self.stores.require_store()
        if gone:
            await target.delete(TRACKS_TEXT, gone)
        if points:
            await self.library.ingest_text([text_item(p) for p in points], skip_unchanged=False)

    async def _final(self) -> None:
        """Before the switch: mirrored writes that failed are settled from the serving space,
        and a last pass makes the text the next space still lacks."""
        failed, self.failed = self.failed, set()
        await self._settle(failed)
        if failed:
            kept = {p.key for p in await self.source.get(TRACKS_AUDIO, sorted(failed))}
            gone = sorted(failed - kept)
            if gone:
                await self.stores.require_store().delete(TRACKS_AUDIO, gone)
        await self._text(count=False)

    async def wanted(self, track_id: str) -> bool:
        """Whether the serving space still holds ``track_id`` (a queued file whose track was
        deleted meanwhile is not stored into the next space)."""
        return self.active and bool(await self.source.get(TRACKS_AUDIO, [track_id]))

    async def _audio(self) -> None:
        self.audio_total += await self.source.count(TRACKS_AUDIO)  # shown with the phase
        self.phase = "audio"
        missing = await self._missing(TRACKS_AUDIO, False)
        linked = {p.key: p for p in missing if p.payload.get("linked_from")}
        ids = {p.key for p in missing if p.key not in linked}
        watcher = self.watcher
        queued = await watcher.reanalyze(ids, into=self) if watcher is not None and ids else set()
        self.pending |= queued
        self.lost.update(dict.fromkeys(sorted(ids - queued)))
        await self._wait(watcher)
        if linked and not self.stop.is_set():
            await self._relink(linked)

    async def _wait(self, watcher: WatcherService | None) -> None:
        """Until the watcher has analysed every pending file and holds no other work (a file
        analysed by the serving model mid-switch would meet the new space): paused with work
        queued, as long as it is paused."""
        idle = 0
        while not self.stop.is_set():
            busy = watcher is not None and bool(watcher.queue.qsize() or watcher.inhand)
            if not busy and not self.pending:
                return
            await asyncio.sleep(WAIT_S)
            idle = 0 if busy else idle + 1
            if idle >= 3:  # the watcher dropped them (stopped): they are not made again
                self.lost.update(dict.fromkeys(sorted(self.pending)))
                self.pending.clear()

    async def _relink(self, linked: dict[str, Point]) -> None:
        """MA tracks carrying a watched file's audio vector (ingest/links.py) get the file's
        new vector, made again until the serving space did not change under the write."""
        keys, target = sorted(linked), self.stores.require_store()
        now = {p.key: p for p in await self.source.get(TRACKS_AUDIO, keys)}
        for _ in range(RELINK_PASSES):
            links = {k: str(p.payload.get("linked_from") or "") for k, p in now.items()}
            got = await target.get(TRACKS_AUDIO, sorted(set(links.values())), with_vectors=True)
            files = {f.key: f for f in got if f.vector is not None}
            points = [
                Point(
                    k,
                    files[f].vector,
                    {**now[k].payload, **heard(files[f]), "model_id": self.model_id},
                )
                for k, f in links.items()
                if f in files
            ]
            if self.step is not None:
                await self.step([p.key for p in points])
            await target.upsert(TRACKS_AUDIO, points)
            made = {p.key for p in points}
            await target.delete(TRACKS_AUDIO, [k for k in keys if k not in made])  # gone, lost
            after = {p.key: p for p in await self.source.get(TRACKS_AUDIO, keys)}
            if {k: p.payload for k, p in after.items()} == {k: p.payload for k, p in now.items()}:
                break
            now = after
        self.audio_total -= len(set(keys) - set(now))  # deleted meanwhile
        self.lost.update(dict.fromkeys(k for k in sorted(now) if k not in made))
        self.audio_done += len(made)
        self.made += len(made)
