"""Audio front-end: PCM decode, resampling to the model rate, windowing and log-mel features.

The log-mel features reproduce transformers' ``ClapFeatureExtractor`` for the unfused CLAP
checkpoints (``truncation="rand_trunc"``, ``padding="repeatpad"``): periodic Hann window, centred
STFT with reflect padding, power spectrum, Slaney mel filterbank, ``10*log10`` with a 1e-10
floor. The same steps are torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank`` (Microsoft
CLAP), whose filterbank may be made for another rate than the audio's (``mel_sampling_rate``)
and whose short clips are tiled to the full length (``padding="repeat"``). The sample rate and
window always come from the model's ``preprocessor_config.json``. Windowing is ours and
deterministic (the extractor's random crop is never used).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from insight.audio_format import AudioFormat
from insight.errors import BadRequest

_SAMPLE_BYTES = {AudioFormat.PCM_F32_LE: 4, AudioFormat.PCM_S16_LE: 2, AudioFormat.PCM_S24_LE: 3}


# --- PCM ----------------------------------------------------------------------------------


# Float PCM is nominally in [-1, 1]; overs up to +24 dB are real audio, beyond is garbage
# (and would overflow the power spectrum into NaN).
MAX_F32_PEAK = 16.0


def _parse_format(fmt: AudioFormat | str) -> AudioFormat:
    try:
        return AudioFormat(fmt)
    except ValueError:
        allowed = ", ".join(f.value for f in AudioFormat)
        raise BadRequest(f"unsupported audio format {fmt!r}; use one of {allowed}") from None


def pcm_frames(size: int, fmt: AudioFormat | str, channels: int) -> int:
    """How many sample frames ``size`` bytes of PCM hold; a clear error when it is no whole
    number of them, the format is unknown or the layout is neither mono nor stereo."""
    f = _parse_format(fmt)
    if channels not in (1, 2):
        raise BadRequest(f"channels must be 1 (mono) or 2 (stereo), got {channels}")
    width = _SAMPLE_BYTES[f]
    frame = width * channels
    if size % frame:
        raise BadRequest(
            f"PCM length {size} bytes is not a multiple of the frame size {frame} "
            f"({f.value}: {width} bytes per sample × {channels} channel(s))"
        )
    return size // frame


def iter_pcm(
    data: bytes, fmt: AudioFormat | str, channels: int, frames_per_chunk: int
) -> Iterator[np.ndarray]:
    """``decode_pcm`` a chunk at a time, so a long body is never all float32 at once."""
    frames = pcm_frames(len(data), fmt, channels)
    step = max(1, frames_per_chunk) * (len(data) // frames if frames else 1)
    view = memoryview(data)
    for start in range(0, len(data), step):
        yield decode_pcm(view[start : start + step], fmt, channels)


def decode_pcm(data: bytes | memoryview, fmt: AudioFormat | str, channels: int) -> np.ndarray:
    """Little-endian PCM → mono float32 in [-1, 1] (stereo is averaged)."""
    f = _parse_format(fmt)
    pcm_frames(len(data), f, channels)
    if f is AudioFormat.PCM_F32_LE:
        x = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if x.size and not np.isfinite(x).all():
            raise BadRequest("pcm_f32_le audio contains NaN or infinite samples")
        if x.size and (peak := float(np.abs(x).max())) > MAX_F32_PEAK:
            raise BadRequest(
                f"pcm_f32_le samples must lie in [-1, 1] (a little over is tolerated); "
                f"got a peak of {peak:.3g}: is this really float PCM?"
            )
    elif f is AudioFormat.PCM_S16_LE:
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = (v ^ 0x800000) - 0x800000  # sign-extend 24 → 32 bits
        x = v.astype(np.float32) / 8_388_608.0
    return np.ascontiguousarray(downmix(x, channels), dtype=np.float32)


def downmix(x: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved float32 samples → their per-frame mean.

    Strided adds: ~30x faster than ``reshape(-1, channels).mean(axis=1)`` on long audio, and
    the same values as ``mean`` over a ``[channels, samples]`` array.
    """
    if channels == 1:
        return x
    mono = x[0::channels] + x[1::channels]
    for c in range(2, channels):
        mono += x[c::channels]
    mono /= np.float32(channels)
    return mono


def _check_rate(sr: int, what: str = "sample_rate") -> None:
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise BadRequest(f"{what} must be a positive integer in Hz, got {sr!r}")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """One-shot high-quality resampling (soxr HQ); identity when the rates match."""
    _check_rate(sr_in)
    _check_rate(sr_out, "target sample rate")
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


class StreamResampler:
    """Chunked resampling whose output does not depend on where the chunks were cut."""

    def __init__(self, sr_in: int, sr_out: int):
        _check_rate(sr_in)
        _check_rate(sr_out, "target sample rate")
        self.sr_in = sr_in
        self.sr_out = sr_out
        self._stream: Any = (
            None
            if sr_in == sr_out
            else soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ")
        )

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._stream is None:
            return x
        return np.asarray(self._stream.resample_chunk(x, last=last), dtype=np.float32)

    def close(self) -> None:
        """Free soxr's buffers now (they grow to 16 MB on a long stream); further input is
        passed through unresampled."""
        self._stream = None


# --- windows ------------------------------------------------------------------------------


PADDINGS = ("repeatpad", "repeat")


def repeat_pad(x: np.ndarray, n: int, padding: str = "repeatpad") -> np.ndarray:
    """HF ``repeatpad``: tile the clip a whole number of times, then zero-pad to ``n``;
    ``repeat`` (Microsoft CLAP): tile it past ``n`` and cut."""
    if x.shape[-1] >= n:
        return x[..., :n]
    reps = n // x.shape[-1] if padding == "repeatpad" else -(-n // x.shape[-1])
    if padding == "repeat":
        return np.ascontiguousarray(np.tile(x, reps)[..., :n])
    out = np.zeros((*x.shape[:-1], n), dtype=x.dtype)
    tiled = np.tile(x, reps)
    out[..., : tiled.shape[-1]] = tiled
    return out


def split_windows(
    x: np.ndarray,
    window_samples: int,
    hop_samples: int,
    min_tail_samples: int = 0,
    padding: str = "repeatpad",
) -> np.ndarray:
    """Cut ``x`` into windows ``[B, window_samples]`` every ``hop_samples``.

    Samples after the last full window form a repeat-padded tail window (dropped when shorter
    than ``min_tail_samples``, unless it is the only window). Audio shorter than one window
    gives one repeat-padded window (``padding`` as :func:`repeat_pad`).
    """
    if window_samples <= 0 or hop_samples <= 0:
        raise BadRequest("window and hop must be positive")
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    n = x.shape[0]
    if n == 0:
        raise BadRequest("audio is empty: no samples to embed")
    if n <= window_samples:
        return repeat_pad(x, window_samples, padding)[None, :]
    n_full = 1 + (n - window_samples) // hop_samples
    full = np.lib.stride_tricks.sliding_window_view(x, window_samples)[::hop_samples][:n_full]
    next_start = n_full * hop_samples
    last_end = (n_full - 1) * hop_samples + window_samples
    if last_end < n and next_start < n and n - last_end >= min_tail_samples:
        tail = repeat_pad(x[next_start:], window_samples, padding)
        return np.concatenate([full, tail[None, :]], axis=0)
    return np.ascontiguousarray(full)


# --- mel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MelConfig:
    """A feature extractor's settings; the defaults are transformers' unfused CLAP extractor's,
    for a folder without ``preprocessor_config.json`` (a family may give others)."""

    sampling_rate: int = 48_000
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    max_length_s: float = 10.0
    nb_max_samples: int = 480_000
    padding: str = "repeatpad"
    truncation: str = "rand_trunc"
    mel_sampling_rate: int | None = None  # the filterbank's rate when not the audio's

    @classmethod
    def from_dict(cls, d: dict[str, Any], defaults: dict[str, Any] | None = None) -> MelConfig:
        d = {**(defaults or {}), **d}
        sr = int(d.get("sampling_rate", cls.sampling_rate))
        max_s = float(d.get("max_length_s", 10))
        padding = str(d.get("padding", "repeatpad"))
        if padding not in PADDINGS:
            raise ValueError(f"padding {padding!r} is not one of {', '.join(PADDINGS)}")
        mel_sr = d.get("mel_sampling_rate")
        return cls(
            sampling_rate=sr,
            n_fft=int(d.get("fft_window_size", d.get("n_fft", 1024))),
            hop_length=int(d.get("hop_length", 480)),
            n_mels=int(d.get("feature_size", d.get("n_mels", 64))),
            f_min=float(d.get("frequency_min", 50.0)),
            f_max=float(d.get("frequency_max", 14_000.0)),
            max_length_s=max_s,
            nb_max_samples=int(d.get("nb_max_samples", round(max_s * sr))),
            padding=padding,
            truncation=str(d.get("truncation", "rand_trunc")),
            mel_sampling_rate=int(mel_sr) if mel_sr is not None else None,
        )

    @classmethod
    def from_model_dir(cls, path: Path, defaults: dict[str, Any] | None = None) -> MelConfig:
        """``preprocessor_config.json`` of the model folder over ``defaults`` (the family's)."""
        for p in (
            Path(path) / "preprocessor_config.json",
            Path(path) / "onnx" / "preprocessor_config.json",
        ):
            if p.is_file():
                return cls.from_dict(json.loads(p.read_text()), defaults)
        return cls.from_dict({}, defaults)

    @property
    def frames(self) -> int:
        return 1 + self.nb_max_samples // self.hop_length


def _hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = 3.0 * f / 200.0
    logstep = 27.0 / np.log(6.4)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) * logstep, mels)


def _mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (np.power(10.0, m / 2595.0) - 1.0)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), 200.0 * m / 3.0)


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """``[n_fft//2+1, n_mels]`` triangular filters, as transformers' ``mel_filter_bank``.

    Slaney scale and area normalisation for ``rand_trunc`` (librosa's defaults), HTK scale
    without normalisation for ``fusion`` (torchaudio's), as the CLAP extractor does.
    """
    scale = "htk" if cfg.truncation == "fusion" else "slaney"
    n_bins = cfg.n_fft // 2 + 1
    mel_pts = np.linspace(
        _hz_to_mel(np.array(cfg.f_min), scale),
        _hz_to_mel(np.array(cfg.f_max), scale),
        cfg.n_mels + 2,
    )
    filter_freqs = _mel_to_hz(mel_pts, scale)
    fft_freqs = np.linspace(0, (cfg.mel_sampling_rate or cfg.sampling_rate) // 2, n_bins)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if scale == "slaney":
        fb *= 2.0 / (filter_freqs[2 : cfg.n_mels + 2] - filter_freqs[: cfg.n_mels])
    return fb


class MelExtractor:
    """Batched log-mel features ``[B, N] → [B, 1, frames, n_mels]`` (float32).

    Windows shorter than the model's input length are repeat-padded and longer ones cut to it,
    so every row has ``cfg.frames`` frames (1001 for 10 s at 48 kHz).

    Speed (a 10 s window in ~4 ms on one core instead of ~11): frames go through the FFT
    ``rows`` at a time so the temporaries stay in cache instead of page-faulting fresh megabytes,
    the FFT runs in float64 (numpy's pocketfft is twice as fast there as in float32), and only
    the FFT bins the filterbank uses are squared and multiplied.
    """

    def __init__(self, cfg: MelConfig | None = None, rows: int = 128):
        self.cfg = cfg or MelConfig()
        self.rows = max(1, rows)
        n = self.cfg.n_fft
        self._window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
        fb = mel_filterbank(self.cfg).astype(np.float32)
        used = np.flatnonzero(fb.any(axis=1))
        self._bins = slice(int(used[0]), int(used[-1]) + 1) if used.size else slice(0, 0)
        self._fb = np.ascontiguousarray(fb[self._bins])

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] == 0:
            raise BadRequest(f"expected windows of shape [B, N], got {x.shape}")
        x = repeat_pad(x, self.cfg.nb_max_samples, self.cfg.padding)
        n, hop = self.cfg.n_fft, self.cfg.hop_length
        padded = np.pad(x, ((0, 0), (n // 2, n // 2)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n, axis=-1)[:, ::hop]
        out = np.empty((x.shape[0], 1, self.cfg.frames, self.cfg.n_mels), dtype=np.float32)
        for b in range(frames.shape[0]):
            for i in range(0, frames.shape[1], self.rows):
                spec = np.fft.rfft(frames[b, i : i + self.rows] * self._window, axis=-1)
                re_im = spec[:, self._bins].view(np.float64)  # [rows, 2 * bins]: re, im, ...
                np.square(re_im, out=re_im)
                power = (re_im[:, 0::2] + re_im[:, 1::2]).astype(np.float32)
                np.matmul(power, self._fb, out=out[b, 0, i : i + self.rows])
        np.maximum(out, 1e-10, out=out)
        np.log10(out, out=out)
        out *= 10.0
        return out
