"""Audio front-end: PCM decode, resampling, windowing and log-mel parity with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from insight.errors import BadRequest
from insight.inference.audio import (
    MelConfig,
    MelExtractor,
    StreamResampler,
    decode_pcm,
    mel_filterbank,
    repeat_pad,
    resample,
    split_windows,
)


def _tone(seconds: float, sr: int = 48_000, f: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


# --- PCM ----------------------------------------------------------------------------------


def test_decode_s16_stereo_is_mean_of_channels() -> None:
    frames = np.array([[16384, -16384], [32767, 32767], [-32768, 0]], dtype="<i2")
    x = decode_pcm(frames.tobytes(), "pcm_s16_le", 2)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [0.0, 32767 / 32768, -0.5], atol=1e-7)


def test_decode_s24_sign_extension() -> None:
    vals = [0, 1, -1, 8_388_607, -8_388_608, 4_194_304]
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in vals)
    x = decode_pcm(raw, "pcm_s24_le", 1)
    np.testing.assert_allclose(x, np.array(vals) / 8_388_608.0, atol=1e-9)


def test_decode_f32_roundtrip() -> None:
    v = np.array([0.25, -1.0, 0.5, 0.75], dtype="<f4")
    np.testing.assert_array_equal(decode_pcm(v.tobytes(), "pcm_f32_le", 1), v)
    np.testing.assert_allclose(decode_pcm(v.tobytes(), "pcm_f32_le", 2), [-0.375, 0.625])


def test_decode_empty_is_empty() -> None:
    assert decode_pcm(b"", "pcm_s16_le", 2).shape == (0,)


@pytest.mark.parametrize(
    ("data", "fmt", "channels", "needle"),
    [
        (b"\x00" * 3, "pcm_s16_le", 1, "not a multiple of the frame size 2"),
        (b"\x00" * 6, "pcm_s16_le", 2, "not a multiple of the frame size 4"),
        (b"\x00" * 7, "pcm_f32_le", 1, "frame size 4"),
        (b"\x00" * 4, "pcm_s24_le", 1, "frame size 3"),
        (b"\x00" * 12, "pcm_s16_le", 0, "channels must be 1"),
        (b"\x00" * 12, "pcm_s16_le", 3, "channels must be 1"),
        (b"\x00" * 12, "pcm_s16_le", -1, "channels must be 1"),
        (np.array([0.0, np.nan], "<f4").tobytes(), "pcm_f32_le", 1, "NaN or infinite"),
        (np.array([np.inf, 0.0], "<f4").tobytes(), "pcm_f32_le", 2, "NaN or infinite"),
        (b"\x00" * 4, "mp3", 1, "unsupported audio format"),
    ],
)
def test_bad_pcm_is_a_clear_bad_request(data: bytes, fmt: str, channels: int, needle: str) -> None:
    with pytest.raises(BadRequest) as err:
        decode_pcm(data, fmt, channels)
    assert needle in err.value.message
    assert err.value.status == 400


@pytest.mark.parametrize("sr", [0, -44100])
def test_zero_rate_is_bad_request(sr: int) -> None:
    with pytest.raises(BadRequest, match="sample_rate must be a positive integer"):
        resample(np.zeros(10, np.float32), sr, 48_000)
    with pytest.raises(BadRequest):
        StreamResampler(sr, 48_000)


# --- resampling ---------------------------------------------------------------------------


def test_resample_keeps_pitch_and_length() -> None:
    x = _tone(2.0, sr=44_100, f=1000.0, seed=1)
    y = resample(x, 44_100, 48_000)
    assert y.dtype == np.float32
    assert abs(len(y) - 96_000) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * 48_000 / len(y)
    assert abs(peak_hz - 1000.0) < 2.0
    assert resample(x, 48_000, 48_000) is not None and np.array_equal(
        resample(x, 48_000, 48_000), x
    )


def test_stream_resampler_ignores_chunk_boundaries() -> None:
    x = _tone(7.3, sr=44_100, seed=2)
    whole = resample(x, 44_100, 48_000)
    rng = np.random.default_rng(3)
    rs = StreamResampler(44_100, 48_000)
    parts, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 20_000))
        parts.append(rs.process(x[pos : pos + n], last=pos + n >= len(x)))
        pos += n
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-4


# --- windows ------------------------------------------------------------------------------


def test_split_windows_tail_is_repeat_padded() -> None:
    x = np.arange(25, dtype=np.float32) + 1
    w = split_windows(x, 10, 10)
    assert w.shape == (3, 10)
    np.testing.assert_array_equal(w[0], x[:10])
    np.testing.assert_array_equal(w[1], x[10:20])
    np.testing.assert_array_equal(w[2], [21, 22, 23, 24, 25, 21, 22, 23, 24, 25])


def test_split_windows_short_exact_and_overlap() -> None:
    x = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(split_windows(x, 10, 10)[0], [1, 2, 3, 1, 2, 3, 1, 2, 3, 0])
    assert split_windows(np.ones(20, np.float32), 10, 10).shape == (2, 10)
    assert split_windows(np.ones(10, np.float32), 10, 5).shape == (1, 10)
    w = split_windows(np.arange(27, dtype=np.float32), 10, 5)
    assert w.shape == (5, 10)  # starts 0, 5, 10, 15 + tail from 20
    np.testing.assert_array_equal(w[3], np.arange(15, 25))
    assert split_windows(np.arange(21, dtype=np.float32), 10, 10, min_tail_samples=5).shape == (
        2,
        10,
    )


def test_split_windows_empty_is_error() -> None:
    with pytest.raises(BadRequest, match="empty"):
        split_windows(np.zeros(0, np.float32), 10, 10)


def test_repeat_pad_matches_hf_repeatpad() -> None:
    x = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 8), [1, 2, 3, 1, 2, 3, 0, 0])


# --- mel ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_fe():  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from insight.testing.hf_clap import hf_feature_extractor

    return hf_feature_extractor()


def test_filterbank_matches_transformers(hf_fe) -> None:  # type: ignore[no-untyped-def]
    fb = mel_filterbank(MelConfig())
    assert fb.shape == (513, 64)
    np.testing.assert_allclose(fb, hf_fe.mel_filters_slaney, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seconds", [10.0, 3.0, 0.5])
def test_mel_matches_clap_feature_extractor(hf_fe, seconds: float) -> None:  # type: ignore[no-untyped-def]
    x = _tone(seconds, seed=int(seconds * 10))
    ref = hf_fe(x, sampling_rate=48_000, return_tensors="np")["input_features"]
    ours = MelExtractor(MelConfig())(x[None, :])
    assert ours.shape == ref.shape == (1, 1, 1001, 64)
    assert ours.dtype == np.float32
    assert np.max(np.abs(ours - ref)) <= 1e-3


def test_mel_batch_equals_single_and_silence_floor(hf_fe) -> None:  # type: ignore[no-untyped-def]
    ext = MelExtractor(MelConfig())
    xs = np.stack([_tone(10.0, f=f, seed=i) for i, f in enumerate((220.0, 880.0, 3000.0))])
    batch = ext(xs)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], ext(xs[i : i + 1])[0])
    silent = ext(np.zeros((1, 480_000), np.float32))
    ref = hf_fe(np.zeros(480_000, np.float32), sampling_rate=48_000, return_tensors="np")
    np.testing.assert_allclose(silent, ref["input_features"], atol=1e-3)
    np.testing.assert_allclose(silent, -100.0, atol=1e-4)


def test_mel_config_from_model_dir(tmp_path: Path) -> None:
    assert MelConfig.from_model_dir(tmp_path) == MelConfig()
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {"sampling_rate": 48000, "frequency_min": 0, "hop_length": 480, "max_length_s": 5}
        )
    )
    cfg = MelConfig.from_model_dir(tmp_path)
    assert cfg.f_min == 0.0
    assert cfg.nb_max_samples == 240_000
    assert cfg.frames == 501
    assert MelExtractor(cfg)(np.ones((2, 1000), np.float32)).shape == (2, 1, 501, 64)


@pytest.mark.parametrize(
    ("fmt", "channels"), [("pcm_s16_le", 2), ("pcm_s24_le", 1), ("pcm_f32_le", 2)]
)
def test_iter_pcm_chunks_join_to_decode_pcm(fmt: str, channels: int) -> None:
    from insight.inference.audio import iter_pcm, pcm_frames

    width = {"pcm_s16_le": 2, "pcm_s24_le": 3, "pcm_f32_le": 4}[fmt]
    frames = 10_001
    if fmt == "pcm_f32_le":
        data = (np.random.default_rng(1).standard_normal(frames * channels) * 0.1).astype("<f4")
        raw = data.tobytes()
    else:
        raw = (
            np.random.default_rng(1).integers(0, 256, frames * channels * width, np.uint8).tobytes()
        )
    assert pcm_frames(len(raw), fmt, channels) == frames
    chunks = list(iter_pcm(raw, fmt, channels, 999))
    assert [c.shape[0] for c in chunks] == [999] * 10 + [11]
    np.testing.assert_array_equal(np.concatenate(chunks), decode_pcm(raw, fmt, channels))
    with pytest.raises(BadRequest, match="frame size"):
        list(iter_pcm(raw[:-1], fmt, channels, 999))


def test_split_windows_hop_longer_than_window_and_repeat_padding() -> None:
    # hop 12 > window 10: windows at 0 and 12, and no empty tail when the audio ends at a hop
    w = split_windows(np.arange(1, 25, dtype=np.float32), 10, 12)
    assert w.shape == (2, 10) and w[1, 0] == 13
    assert split_windows(np.arange(1, 26, dtype=np.float32), 10, 12)[2, 0] == 25
    # msclap tiles a short clip to the full length; transformers' CLAP zero-pads the remainder
    np.testing.assert_array_equal(
        repeat_pad(np.array([1, 2, 3], np.float32), 8, "repeat"), [1, 2, 3, 1, 2, 3, 1, 2]
    )
