"""Embeddings on demand: text (raw or from metadata) and PCM audio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from insight.api import Router
from insight.errors import BadRequest, PayloadTooLarge
from insight.inference.audio import StreamResampler, iter_pcm, pcm_frames
from insight.inference.model import AudioSpec, track_vector
from insight.ingest.windows import WindowCutter
from insight.library import metadata_text
from insight.schemas import (
    AudioEmbedRequest,
    AudioEmbedResponse,
    TextEmbedRequest,
    TextEmbedResponse,
)

if TYPE_CHECKING:
    from insight.app import App
    from insight.inference.pool import InferencePool

router = Router(tag="embed")
CHUNK_S = 10.0  # input decoded and resampled at a time
CHUNK_WINDOWS = 16  # ... and at most this many windows completed by one chunk


@router.endpoint("embed.text", "POST", "/embed/text")
async def embed_text(app: App, req: TextEmbedRequest) -> TextEmbedResponse:
    """Text embedding of a raw text, or of track metadata formatted as one sentence."""
    pool = app.require_pool()
    text = req.text if req.text is not None else metadata_text(req.metadata)  # type: ignore[arg-type]
    vector = (await pool.embed_texts([text]))[0]
    return TextEmbedResponse(embedding=vector.tolist(), text=text)


@router.endpoint("embed.audio", "POST", "/embed/audio", errors=(413,))
async def embed_audio(app: App, req: AudioEmbedRequest) -> AudioEmbedResponse:
    """Audio embedding of PCM data: windows of WINDOW_SIZE_S every HOP_SIZE_S, mean vector.

    At most ``INSIGHT_AUDIO__MAX_EMBED_S`` seconds (413 beyond); the audio is decoded,
    resampled and cut a chunk at a time, so memory stays bounded whatever the input rate.
    """
    pool = app.require_pool()
    cfg = app.settings.audio
    duration = pcm_frames(len(req.data), req.format, req.channels) / req.sample_rate
    if duration > cfg.max_embed_s:
        raise PayloadTooLarge(
            f"{duration:.1f} s of audio is more than one embed call takes "
            f"({cfg.max_embed_s:g} s, INSIGHT_AUDIO__MAX_EMBED_S); stream longer audio "
            "through /stream/start, /frames and /end"
        )
    spec = pool.model.audio_spec(cfg.window_size_s, cfg.hop_size_s)
    chunk_s = min(CHUNK_S, CHUNK_WINDOWS * spec.hop / spec.sample_rate)
    chunks = iter_pcm(req.data, req.format, req.channels, round(chunk_s * req.sample_rate))
    vector, windows = await embed_chunks(pool, chunks, req.sample_rate, spec)
    return AudioEmbedResponse(embedding=vector.tolist(), duration_s=duration, windows=windows)


async def embed_chunks(
    pool: InferencePool, chunks: Iterator[np.ndarray], sample_rate: int, spec: AudioSpec
) -> tuple[np.ndarray, int]:
    """Mean vector of the windows of a stream of mono chunks: the same windows as
    ``split_windows`` over the whole audio, holding a chunk and a window at a time."""
    resampler = StreamResampler(sample_rate, spec.sample_rate)
    cutter = WindowCutter(spec.window, spec.hop, spec.padding)
    total = np.zeros(0, dtype=np.float64)
    count = 0

    async def add(windows: np.ndarray) -> None:
        nonlocal total, count
        if windows.shape[0]:
            vectors = await pool.embed_windows(windows, rate=spec.sample_rate)
            vectors = vectors.astype(np.float64)
            total = vectors.sum(axis=0) + (total if count else 0.0)
            count += windows.shape[0]

    for mono in chunks:
        await add(cutter.push(resampler.process(mono)))
    await add(cutter.push(resampler.process(np.zeros(0, np.float32), last=True)))
    tail = cutter.tail()
    if tail is not None:
        await add(tail[None, :])
    if not count:
        raise BadRequest("audio is empty: no samples to embed")
    return track_vector((total / count)[None, :]), count
