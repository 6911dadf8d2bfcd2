"""Audio files → mono 48 kHz float32 with PyAV (ffmpeg inside the wheel, no system ffmpeg)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from insight.inference.audio import repeat_pad, split_windows

log = logging.getLogger("insight.watcher.decode")

SR = 48_000
MAX_BAD_PACKETS = 50


class DecodeFailed(Exception):
    """The file cannot be decoded (corrupt, unsupported, no audio stream)."""


@dataclass
class Decoded:
    windows: np.ndarray  # [n, window_samples]
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray | None = None  # the whole track (full mode only)


def _open(path: Path) -> tuple[Any, Any]:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeFailed(f"cannot open: {exc}") from exc
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        container.close()
        raise DecodeFailed("no audio stream")
    stream.thread_type = "AUTO"  # type: ignore[attr-defined]
    return container, stream


def _metadata(container: Any, stream: Any) -> dict[str, Any]:
    meta = dict(stream.metadata or {})
    meta.update(container.metadata or {})
    return meta


def _mono(frame: Any) -> np.ndarray:
    x = frame.to_ndarray()  # fltp: [channels, samples]
    return np.asarray(x.mean(axis=0) if x.shape[0] > 1 else x[0], dtype=np.float32)


def _decode(
    container: Any,
    stream: Any,
    start_s: float = 0.0,
    max_samples: int | None = None,
) -> np.ndarray:
    """Decode from ``start_s`` (after a seek) until ``max_samples`` mono 48 kHz samples."""
    resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=SR)
    chunks: list[np.ndarray] = []
    have, bad = 0, 0
    skip = None if start_s <= 0 else start_s

    def take(frames: list[Any]) -> None:
        nonlocal have, skip
        for out in frames:
            x = _mono(out)
            if skip is not None:
                t = float(out.pts * out.time_base) if out.pts is not None else None
                if t is not None and t + x.shape[0] / SR <= skip:
                    continue
                if t is not None and t < skip:
                    x = x[int((skip - t) * SR) :]
                skip = None
            chunks.append(x)
            have += x.shape[0]

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise DecodeFailed(f"too many undecodable packets: {exc}") from exc
            continue
        for frame in frames:
            take(resampler.resample(frame))
        if max_samples is not None and have >= max_samples:
            break
    else:
        take(resampler.resample(None))
    if not chunks:
        raise DecodeFailed("no decodable audio")
    x = np.concatenate(chunks)
    return x[:max_samples] if max_samples is not None else x


def duration_of(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def spread(x: np.ndarray, n: int, window: int) -> np.ndarray:
    """``n`` windows spread evenly over ``x`` (all windows when ``x`` is short)."""
    if x.shape[0] <= window * n:
        return split_windows(x, window, window, min_tail_samples=window // 4)
    starts = np.linspace(0, x.shape[0] - window, n + 2)[1:-1].astype(int)
    return np.stack([x[s : s + window] for s in starts])


def decode_full(path: Path, window_s: float, hop_s: float) -> Decoded:
    container, stream = _open(path)
    try:
        meta = _metadata(container, stream)
        try:
            x = _decode(container, stream)
        except av.FFmpegError as exc:
            raise DecodeFailed(str(exc)) from exc
    finally:
        container.close()
    windows = split_windows(x, int(window_s * SR), int(hop_s * SR))
    return Decoded(windows=windows, duration_s=x.shape[0] / SR, metadata=meta, audio=x)


def decode_sampled(path: Path, n: int, window_s: float) -> Decoded:
    """``n`` windows spread over the track, decoding only around them (seek per window)."""
    window = int(window_s * SR)
    container, stream = _open(path)
    try:
        meta = _metadata(container, stream)
        duration = duration_of(container, stream)
        if duration is None or duration <= window_s * (n + 1):
            x = _decode(container, stream)
            return Decoded(spread(x, n, window), x.shape[0] / SR, meta)
        out = []
        for i in range(n):
            start = (duration - window_s) * (i + 1) / (n + 1)
            try:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
                seg = _decode(container, stream, start_s=start, max_samples=window)
            except (av.FFmpegError, DecodeFailed) as exc:
                log.debug("seek_failed path=%s at=%.1f error=%s", path, start, exc)
                continue
            out.append(repeat_pad(seg, window) if seg.shape[0] < window else seg)
        if not out:  # seeking failed everywhere: decode it all
            container.seek(0)
            x = _decode(container, stream)
            return Decoded(spread(x, n, window), x.shape[0] / SR, meta)
        return Decoded(np.stack(out), duration, meta)
    except av.FFmpegError as exc:
        raise DecodeFailed(str(exc)) from exc
    finally:
        container.close()
