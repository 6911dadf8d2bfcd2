"""Writing tracks to the store: one place that every ingest path goes through.

embed-text, library events, stream end and the folder watcher all store a track the same way:
text vector from the metadata sentence, audio vector when there is one, mood and V/A on the
payload (from the audio vector when present), the model that made the vectors, and a
``track analyzed`` notification.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from insight.analysers import Analyser, discover, payload_fields
from insight.bus import subjects
from insight.codec import pack
from insight.gate import Gate
from insight.inference.text import format_track_text
from insight.schemas import HashedMetadata, IngestMetadata, TrackMetadata
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from insight.config import Settings
    from insight.mood.classifier import MoodClassifier
    from insight.state import ModelSlot, StoreSlot
    from insight.storage.base import VectorStore

log = logging.getLogger("insight.library")


@dataclass(slots=True)
class TextItem:
    track_id: str
    metadata: HashedMetadata
    source: str = "api"
    file_path: str | None = None


@dataclass(slots=True)
class Stored:
    track_id: str
    text: str
    text_stored: bool = False
    audio_stored: bool = False
    skipped: bool = False
    primary_mood: str | None = None


def metadata_text(m: IngestMetadata) -> str:
    version = getattr(m, "version", None)  # a "Live" or "Remix" take reads differently
    name = f"{m.name} ({version})" if version else m.name
    return format_track_text(name, m.artists, m.album, m.genres)


def track_metadata(payload: dict[str, Any], *, file_paths: bool = False) -> TrackMetadata:
    """A stored payload as a result's metadata. ``file_path`` stays null unless ``file_paths``
    (``INSIGHT_SERVER__EXPOSE_FILE_PATHS``): where the server keeps its files is not for
    everyone who may search; the watcher's own endpoints show paths to its operator."""
    if not file_paths and payload.get("file_path") is not None:
        payload = {k: v for k, v in payload.items() if k != "file_path"}
    return TrackMetadata.model_validate(payload)


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


def file_paths_visible(app: HasSettings) -> bool:
    return app.settings.server.expose_file_paths


EXTRA_FIELDS = ("version", "year", "mbid", "external_ids", "bpm", "key")


def extra_fields(meta: IngestMetadata) -> dict[str, Any]:
    """Music Assistant's extra track fields (``EventTrackMetadata``) that are set."""
    out = {f: getattr(meta, f, None) for f in EXTRA_FIELDS}
    return {k: v for k, v in out.items() if v not in (None, "", {})}


async def set_file_path(store: VectorStore, track_id: str, file_path: str) -> None:
    for collection in (TRACKS_TEXT, TRACKS_AUDIO):
        points = await store.get(collection, [track_id], with_vectors=True)
        for p in points:
            p.payload["file_path"] = file_path
        if points:
            await store.upsert(collection, points)


class Mirror(Protocol):
    """Where every write also goes while a model migration fills the next model's space
    (insight/models/migration.py): the new model makes its own vectors from what it gets."""

    async def texts(self, items: list[TextItem]) -> None: ...

    async def analysis(
        self, track_id: str, meta: HashedMetadata, source: str, file_path: str | None, audio: bool
    ) -> None: ...

    async def upserted(
        self, track_id: str, meta: IngestMetadata, text: bool, audio: bool
    ) -> None: ...

    async def deleted(self, track_id: str, text: bool, audio: bool) -> None: ...

    async def moved(self, track_id: str, file_path: str) -> None: ...


class Library:
    """Stores tracks: text and audio vectors with one payload, then announces them."""

    def __init__(
        self, loaded: ModelSlot, stores: StoreSlot, mood: MoodClassifier, nc: NATS | None = None
    ) -> None:
        self.loaded, self.stores, self.mood, self.nc = loaded, stores, mood, nc
        # analysers beside mood (insight.analysers): installed ones; a service may add its own
        self.analysers: list[Analyser] = discover()
        self.mirror: Mirror | None = None  # set while a model migration runs
        self.gate = Gate()  # writes shared, a migration's switch alone (insight/gate.py)

    def _payload(
        self,
        track_id: str,
        meta: IngestMetadata,
        source: str,
        file_path: str | None = None,
        mood: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "track_id": track_id,
            "name": meta.name,
            "artists": list(meta.artists),
            "album": meta.album or None,
            "genres": list(meta.genres),
            "metadata_hash": getattr(meta, "metadata_hash", None),
            "file_path": file_path,
            "source": source,
            "model_id": self.loaded.model_id,
            "updated_at": int(time.time()),
            **(mood or {}),
            **extra_fields(meta),
        }

    async def mood_fields(self, vector: np.ndarray) -> dict[str, Any]:
        """Payload fields of every analyser: mood first, then the others in order."""
        # mood answers {} itself while no model is loaded
        return await payload_fields([self.mood, *self.analysers], vector)

    async def unchanged(self, items: list[TextItem]) -> set[str]:
        """Track ids whose stored metadata_hash equals the given one (nothing to do)."""
        hashed = {i.track_id: i.metadata.metadata_hash for i in items if i.metadata.metadata_hash}
        if not hashed:
            return set()
        points = await self.stores.require_store().get(TRACKS_TEXT, list(hashed))
        current = self.loaded.model_id
        return {
            p.key
            for p in points
            if p.payload.get("metadata_hash") == hashed[p.key]
            and p.payload.get("model_id") == current
        }

    async def ingest_text(
        self, items: list[TextItem], *, skip_unchanged: bool = True
    ) -> list[Stored]:
        """Embed the metadata sentence of each track (one batch), classify mood, upsert."""
        async with self.gate.shared():
            store = self.stores.require_store()
            pool = self.loaded.require_pool()
            skip = await self.unchanged(items) if skip_unchanged else set()
            todo = [i for i in items if i.track_id not in skip]
            texts = [metadata_text(i.metadata) for i in todo]
            vectors = await pool.embed_texts(texts, background=True)
            points = []
            results = {
                i.track_id: Stored(i.track_id, "", skipped=True)
                for i in items
                if i.track_id in skip
            }
            for item, text, vec in zip(todo, texts, vectors, strict=True):
                mood = await self.mood_fields(vec)
                payload = self._payload(
                    item.track_id, item.metadata, item.source, item.file_path, mood
                )
                points.append(Point(item.track_id, vec, payload))
                results[item.track_id] = Stored(
                    item.track_id, text, text_stored=True, primary_mood=mood.get("primary_mood")
                )
            if points:
                await store.upsert(TRACKS_TEXT, points)
            if self.mirror is not None and todo:
                await self.mirror.texts(todo)
            return [results[i.track_id] for i in items]

    async def ingest_analysis(
        self,
        track_id: str,
        metadata: IngestMetadata,
        audio_vector: np.ndarray | None,
        *,
        source: str,
        file_path: str | None = None,
        metadata_hash: str | None = None,
        store: bool = True,
    ) -> Stored:
        """Text + audio vectors of a fully analysed track (stream end, watcher)."""
        async with self.gate.shared():
            pool = self.loaded.require_pool()
            text = metadata_text(metadata)
            text_vec = (await pool.embed_texts([text], background=True))[0]
            if not store:
                return Stored(track_id, text)
            meta = HashedMetadata(**metadata.model_dump(), metadata_hash=metadata_hash)
            result = await self._write(track_id, meta, source, text_vec, audio_vector, file_path)
            if self.mirror is not None:
                await self.mirror.analysis(
                    track_id, meta, source, file_path, audio_vector is not None
                )
            result.text = text
            await self.announce(track_id, source, result)
            return result

    async def upsert_vectors(
        self,
        track_id: str,
        metadata: IngestMetadata,
        text_vector: np.ndarray | None,
        audio_vector: np.ndarray | None,
    ) -> Stored:
        """Store pre-computed vectors (``/tracks/upsert``)."""
        async with self.gate.shared():
            stored = await self._write(track_id, metadata, "upsert", text_vector, audio_vector)
            if self.mirror is not None:  # the next model re-embeds the text; the audio is lost
                await self.mirror.upserted(
                    track_id, metadata, text_vector is not None, audio_vector is not None
                )
            return stored

    async def _write(
        self,
        track_id: str,
        metadata: IngestMetadata,
        source: str,
        text_vector: np.ndarray | None,
        audio_vector: np.ndarray | None,
        file_path: str | None = None,
    ) -> Stored:
        """Upsert the given vectors with one payload; mood from the audio vector when there is
        one (it hears the music), else from the text vector."""
        db = self.stores.require_store()
        best = audio_vector if audio_vector is not None else text_vector
        mood = await self.mood_fields(best) if best is not None else {}
        payload = self._payload(track_id, metadata, source, file_path, mood)
        result = Stored(track_id, "", primary_mood=mood.get("primary_mood"))
        if audio_vector is not None:
            await db.upsert(TRACKS_AUDIO, [Point(track_id, audio_vector, payload)])
            result.audio_stored = True
        if text_vector is not None:
            await db.upsert(TRACKS_TEXT, [Point(track_id, text_vector, payload)])
            result.text_stored = True
        return result

    async def delete_track(
        self, track_id: str, *, text: bool = True, audio: bool = True
    ) -> tuple[bool, bool]:
        async with self.gate.shared():
            db = self.stores.require_store()
            text_deleted = bool(await db.delete(TRACKS_TEXT, [track_id])) if text else False
            audio_deleted = bool(await db.delete(TRACKS_AUDIO, [track_id])) if audio else False
            if self.mirror is not None:
                await self.mirror.deleted(track_id, text, audio)
            return text_deleted, audio_deleted

    async def move_file(self, track_id: str, file_path: str) -> None:
        """A watched file moved: its track keeps its vectors, ``file_path`` follows (in the
        next model's space too while a migration fills it)."""
        async with self.gate.shared():
            await set_file_path(self.stores.require_store(), track_id, file_path)
            if self.mirror is not None:
                await self.mirror.moved(track_id, file_path)

    async def announce(self, track_id: str, source: str, result: Stored) -> None:
        """Publish ``insight.notify.track.analyzed`` (core NATS; best effort)."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        body = {
            "track_id": track_id,
            "source": source,
            "text_stored": result.text_stored,
            "audio_stored": result.audio_stored,
            "primary_mood": result.primary_mood,
            "model_id": self.loaded.model_id,
        }
        try:
            await nc.publish(subjects.TRACK_ANALYZED, pack(body))
        except Exception as exc:  # a notification never fails the write
            log.warning("announce_failed track=%s error=%s", track_id, exc)
