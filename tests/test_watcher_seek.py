"""Sampled mode seeks to its windows and gets the audio a full decode has there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from insight.inference.model import AudioSpec
from insight.watcher.decode import decode_full, decode_sampled, spread, window_starts

CLAP_SPEC = AudioSpec(48_000, 480_000, 480_000)  # 10 s windows of transformers CLAP
SR = CLAP_SPEC.sample_rate

RATE = 44_100


def encode(path: Path, codec: str, seconds: float, **options: str) -> Path:
    """Tone sweep + noise, stereo 44.1 kHz (noise makes any misalignment visible)."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as c:
        s: Any = c.add_stream(codec, rate=RATE, layout="stereo")
        s.codec_context.options = {"strict": "experimental", **options}
        if codec == "libmp3lame" and options:
            s.bit_rate = 128_000
        fmt = s.codec_context.codec.audio_formats[0].name
        step = 4096
        for i in range(0, int(seconds * RATE), step):
            t = (np.arange(step) + i) / RATE
            loud = 0.5 if options and (i // RATE) % 4 == 0 else 0.2  # VBR: busy, quiet, ...
            x = np.stack([np.sin(2 * np.pi * (220 + 30 * t) * t), np.cos(2 * np.pi * 330 * t)])
            x = (loud * x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
            arr: np.ndarray = {
                "fltp": x,
                "s16p": (x * 32767).astype(np.int16),
                "s32p": (x * 2**31 * 0.999).astype(np.int32),
                "s16": (x.T.reshape(1, -1) * 32767).astype(np.int16),
                "flt": x.T.reshape(1, -1).copy(),
            }[fmt]
            frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = RATE, i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.mark.parametrize(
    ("ext", "codec"),
    [("mp3", "libmp3lame"), ("flac", "flac"), ("ogg", "vorbis"), ("m4a", "aac")],
)
def test_sampled_windows_equal_a_full_decode(tmp_path: Path, ext: str, codec: str) -> None:
    path = encode(tmp_path / f"x.{ext}", codec, 45.0)
    sampled = decode_sampled(path, 3, CLAP_SPEC)
    assert sampled.seeked  # decoded around the windows only
    full = decode_full(path, CLAP_SPEC).audio
    assert full is not None
    starts = [round(s * SR) for s in window_starts(sampled.duration_s, 3, 10.0)]
    assert abs(sampled.duration_s - full.shape[0] / SR) < 0.05
    assert sampled.windows.shape == (3, 10 * SR)
    for start, got in zip(starts, sampled.windows, strict=True):
        want = full[start : start + 10 * SR]
        cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos >= 0.999, (ext, start, cos)
        # aac's noise substitution (PNS) draws from the decoder's random state, which a seek
        # resets: those bands differ slightly; every other codec is sample-exact here
        bound = 0.05 if ext == "m4a" else 1e-3
        assert float(np.abs(got - want).max()) < bound, (ext, start)


def test_variable_bitrate_mp3_decodes_whole(tmp_path: Path) -> None:
    """mp3 without a constant bitrate seeks by estimate: the whole file is decoded instead."""
    path = encode(tmp_path / "vbr.mp3", "libmp3lame", 45.0, abr="1")
    sampled = decode_sampled(path, 3, CLAP_SPEC)
    assert not sampled.seeked
    full = decode_full(path, CLAP_SPEC).audio
    assert full is not None
    np.testing.assert_array_equal(sampled.windows, spread(full, 3, 10 * SR))
