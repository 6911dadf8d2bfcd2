"""Encoded audio files for tests: a tagged tone per file, in every codec the watcher reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

from insight.inference.model import AudioSpec

CLAP_SPEC = AudioSpec(48_000, 480_000, 480_000)  # 10 s windows of transformers CLAP

CODECS = {
    ".mp3": "libmp3lame",
    ".flac": "flac",
    ".ogg": "libopus",
    ".m4a": "aac",
    ".wav": "pcm_s16le",
}


def write_track(
    path: Path, seconds: float = 4.0, freq: float = 440.0, tags: dict[str, str] | None = None
) -> Path:
    """Encode a tone + noise with PyAV (opus for .ogg: the wheel has no vorbis encoder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    codec = CODECS[ext]
    rate = 48000 if codec == "libopus" else 44100
    with av.open(str(path), "w", format={".m4a": "ipod", ".ogg": "ogg"}.get(ext)) as c:
        stream: Any = c.add_stream(codec, rate=rate, layout="stereo")
        for k, v in (tags or {}).items():
            c.metadata[k] = v
        n = int(seconds * rate)
        t = np.arange(n) / rate
        rng = np.random.default_rng(int(freq))
        sig = (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)).astype(
            np.float32
        )
        data = np.stack([sig, sig])
        step = 960 if codec == "libopus" else 1024
        for i in range(0, n, step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, i : i + step]), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return path


def tagged(title: str, artist: str, album: str, genre: str, **extra: str) -> dict[str, str]:
    return {"title": title, "artist": artist, "album": album, "genre": genre, **extra}
