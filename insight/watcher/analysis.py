"""One audio file → its tags and track vector, and that analysis stored in the library."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from insight.inference.audio import MelConfig
from insight.inference.model import track_vector
from insight.schemas import IngestMetadata
from insight.watcher.decode import Limits, decode_in_mode
from insight.watcher.host_work import HostProcesses, feature_job, features_of, windows_of
from insight.watcher.tags import TrackTags, read_tags

if TYPE_CHECKING:
    from insight.config import AudioSettings
    from insight.library import Library
    from insight.state import ModelSlot

SOURCE = "watcher"


@dataclass
class Analysis:
    tags: TrackTags
    vector: np.ndarray
    windows: int
    duration_s: float


def metadata_hash(tags: TrackTags) -> str:
    blob = json.dumps([tags.name, tags.artists, tags.album, tags.genres], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


async def analyze_file(
    loaded: ModelSlot,
    audio: AudioSettings,
    path: Path,
    mode: str,
    sampled_windows: int,
    limits: Limits | None = None,
    executor: Executor | None = None,
    bulk: bool = False,
    processes: HostProcesses | None = None,
) -> Analysis:
    """Decode (``full`` or ``sampled``), read tags, embed the windows; nothing is stored.

    ``executor`` runs the decode and tag reading (the watcher's low-priority threads);
    ``bulk`` embeds as background work that yields to interactive requests. ``processes``
    (:mod:`insight.watcher.host_work`) decode instead: in the foreground (``insight scan``)
    they make the log-mel features too and the pool runs only the tower; in the background
    they return the windows, which go the usual way (bulk lane, inference workers)."""
    pool = loaded.require_pool()
    spec = pool.model.audio_spec(audio.window_size_s, audio.hop_size_s)  # sized as the model
    loop = asyncio.get_running_loop()
    mel = getattr(pool.model, "mel_config", None)
    mel = mel if isinstance(mel, MelConfig) else None
    job = feature_job(path, mode, sampled_windows, spec, mel, limits or Limits())
    if processes is not None and not bulk and mel is not None:
        got = await processes.run(features_of, job)
        tags = await loop.run_in_executor(executor, read_tags, path, got.metadata)
        vectors = await pool.embed_features(got.features, rate=spec.sample_rate)
        return Analysis(tags, track_vector(vectors), int(got.features.shape[0]), got.duration_s)
    if processes is not None:
        decoded = await processes.run(windows_of, job)
    else:
        decoded = await loop.run_in_executor(
            executor, decode_in_mode, path, mode, sampled_windows, spec, limits
        )
    tags = await loop.run_in_executor(executor, read_tags, path, decoded.metadata)
    vectors = await pool.embed_windows(decoded.windows, bulk=bulk, rate=spec.sample_rate)
    vector = track_vector(vectors)
    return Analysis(tags, vector, int(decoded.windows.shape[0]), decoded.duration_s)


async def store_analysis(library: Library, track_id: str, result: Analysis, file_path: str) -> None:
    tags = result.tags
    meta = IngestMetadata(
        name=tags.name, artists=tags.artists, album=tags.album, genres=tags.genres
    )
    await library.ingest_analysis(
        track_id,
        meta,
        result.vector,
        source=SOURCE,
        file_path=file_path,
        metadata_hash=metadata_hash(tags),
    )
