"""Embeddings on demand: text (raw or from metadata) and PCM audio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.inference.audio import decode_pcm, resample
from insight.library import metadata_text
from insight.schemas import (
    AudioEmbedRequest,
    AudioEmbedResponse,
    TextEmbedRequest,
    TextEmbedResponse,
)

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="embed")
SAMPLE_RATE = 48_000


@router.endpoint("embed.text", "POST", "/embed/text")
async def embed_text(app: App, req: TextEmbedRequest) -> TextEmbedResponse:
    """Text embedding of a raw text, or of track metadata formatted as one sentence."""
    pool = app.require_pool()
    text = req.text if req.text is not None else metadata_text(req.metadata)  # type: ignore[arg-type]
    vector = (await pool.embed_texts([text]))[0]
    return TextEmbedResponse(embedding=vector.tolist(), text=text)


@router.endpoint("embed.audio", "POST", "/embed/audio")
async def embed_audio(app: App, req: AudioEmbedRequest) -> AudioEmbedResponse:
    """Audio embedding of PCM data: windows of WINDOW_SIZE_S every HOP_SIZE_S, mean vector."""
    pool = app.require_pool()
    mono = decode_pcm(req.data, req.format, req.channels)
    duration = mono.shape[0] / req.sample_rate
    mono48k = (
        resample(mono, req.sample_rate, SAMPLE_RATE) if req.sample_rate != SAMPLE_RATE else mono
    )
    cfg = app.settings.audio
    vector, windows = await pool.embed_audio(mono48k, cfg.window_size_s, cfg.hop_size_s)
    return AudioEmbedResponse(embedding=vector.tolist(), duration_s=duration, windows=windows)
