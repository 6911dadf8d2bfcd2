"""File decoding against the signal it holds: every sample format and layout, and the same
audio as Music Assistant's streamed PCM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.audio_files import CLAP_SPEC


def test_file_decode_equals_streamed_pcm(tmp_path: Path) -> None:
    """A lossless file decodes to the same 48 kHz mono audio as its PCM streamed by Music
    Assistant (same downmix, same soxr resampler), so both paths give one vector per track."""
    from insight.inference.audio import decode_pcm, resample
    from insight.watcher.decode import decode_full

    rate, n = 44_100, 44_100 * 7 + 123
    rng = np.random.default_rng(3)
    t = np.arange(n) / rate
    left = 0.4 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(n)
    right = 0.2 * np.sin(2 * np.pi * 550 * t) + 0.05 * rng.standard_normal(n)
    pcm = (np.stack([left, right], axis=1) * 32767).astype("<i2")  # interleaved [n, 2]
    path = tmp_path / "x.flac"
    with av.open(str(path), "w") as c:
        stream: Any = c.add_stream("flac", rate=rate, layout="stereo")
        for i in range(0, n, 4096):
            chunk = np.ascontiguousarray(pcm[i : i + 4096]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)

    streamed = resample(decode_pcm(pcm.tobytes(), "pcm_s16_le", 2), rate, 48_000)
    decoded = decode_full(path, CLAP_SPEC)
    assert decoded.audio is not None and decoded.audio.shape == streamed.shape
    assert float(np.abs(decoded.audio - streamed).max()) <= 1e-6
    assert abs(decoded.duration_s - n / rate) < 1e-3
    assert decoded.windows.shape == (1, 480_000)


def _write_tone_file(path: Path, codec: str, fmt: str, layout: str, rate: int) -> np.ndarray:
    """Write 2 s of one tone per channel; returns the float signal ``[n, channels]``."""
    channels = {"mono": 1, "stereo": 2, "2.1": 3}[layout]
    n = rate * 2 + 77
    t = np.arange(n)[:, None] / rate
    x = 0.4 * np.sin(2 * np.pi * t * 220 * (1 + np.arange(channels)))
    base = fmt.removesuffix("p")
    scale, dtype = {
        "u8": (128, np.uint8),
        "s16": (32767, np.int16),
        "s32": (2**31 - 1, np.int32),
    }.get(base, (1, np.float32 if base == "flt" else np.float64))
    data = np.round(x * scale + (128 if base == "u8" else 0)) if scale > 1 else x
    # planar formats take [channels, samples], packed ones [1, interleaved samples]
    data = data.T if fmt.endswith("p") else data.reshape(1, -1)
    with av.open(str(path), "w") as c:
        stream: Any = c.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data.astype(dtype)), format=fmt, layout=layout
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return x


_SAMPLE_FORMAT_FILES = [
    ("wav", "pcm_u8", "u8", 1e-2),
    ("wav", "pcm_s16le", "s16", 1e-4),
    ("wav", "pcm_s32le", "s32", 1e-6),
    ("wav", "pcm_f32le", "flt", 1e-6),
    ("wav", "pcm_f64le", "dbl", 1e-6),
    ("flac", "flac", "s16", 1e-4),
    ("m4a", "alac", "s16p", 1e-4),  # decodes to planar s16p; the encoder takes 1 or 2 channels
]


@pytest.mark.parametrize(
    ("ext", "codec", "fmt", "tolerance", "layout"),
    [
        (*case, layout)
        for case in _SAMPLE_FORMAT_FILES
        for layout in ("mono", "stereo", "2.1")
        if not (case[1] == "alac" and layout == "2.1")
    ],
)
def test_decode_reads_every_sample_format(
    tmp_path: Path, ext: str, codec: str, fmt: str, tolerance: float, layout: str
) -> None:
    """Samples are read straight from the decoder's planes: every integer and float format,
    packed or planar, any channel count, scaled to [-1, 1] and averaged as ffmpeg would."""
    from insight.inference.audio import resample
    from insight.watcher.decode import decode_full

    x = _write_tone_file(tmp_path / f"x.{ext}", codec, fmt, layout, 44_100)
    expected = resample(x.mean(axis=1).astype(np.float32), 44_100, 48_000)
    decoded = decode_full(tmp_path / f"x.{ext}", CLAP_SPEC)
    assert decoded.audio is not None and decoded.audio.shape == expected.shape
    assert float(np.abs(decoded.audio - expected).max()) <= tolerance


def test_decode_converts_unknown_sample_formats_with_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample format not read directly goes through ffmpeg's converter, same audio."""
    from insight.watcher import decode

    _write_tone_file(tmp_path / "x.flac", "flac", "s16", "stereo", 44_100)
    direct = decode.decode_full(tmp_path / "x.flac", CLAP_SPEC).audio
    monkeypatch.delitem(decode._SAMPLE_TYPES, "s16")
    converted = decode.decode_full(tmp_path / "x.flac", CLAP_SPEC).audio
    assert direct is not None and converted is not None and direct.shape == converted.shape
    assert float(np.abs(direct - converted).max()) <= 1e-6


@pytest.mark.parametrize(
    "fmt", ["u8", "s16", "s32", "flt", "dbl", "u8p", "s16p", "s32p", "fltp", "dblp"]
)
@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_mono_is_the_mean_of_the_channels_converted_one_by_one(fmt: str, channels: int) -> None:
    """Summing the channels before converting them gives, bit for bit, the values converting
    each first does (integer sums are exact in float32 here, the scales powers of two)."""
    from insight.watcher.decode import _SAMPLE_TYPES, _to_mono

    dtype, offset, scale = _SAMPLE_TYPES[fmt.removesuffix("p")]
    rng = np.random.default_rng(channels)
    n = 10_001
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        samples = rng.integers(info.min, info.max, size=(channels, n), endpoint=True, dtype=dtype)
    else:
        samples = rng.uniform(-1, 1, size=(channels, n)).astype(dtype)
    # planar: one plane per channel, and a frame may carry more planes than channels
    planes = [*samples, samples[0]] if fmt.endswith("p") else [samples.T.reshape(-1)]
    before = [p.copy() for p in planes]
    each = [(c.astype(np.float32) - np.float32(offset)) * np.float32(scale) for c in samples]
    expected = sum(each[1:], each[0]) / np.float32(channels)
    got = _to_mono(planes, fmt, channels)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_array_equal(got, expected)
    assert float(np.abs(got).max()) <= 1.0
    for p, b in zip(planes, before, strict=True):  # the decoded planes are not written to
        np.testing.assert_array_equal(p, b)
