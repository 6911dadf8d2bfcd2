"""Audio files → mono float32 at the model rate with PyAV (ffmpeg inside the wheel).

The rate and the window come from the loaded model (an ``AudioSpec``), so a file is cut
exactly as ``embed-audio`` and stream sessions cut the same audio. Files are opened by
``guard.open_regular`` (regular files only, never blocking) and handed to
PyAV as file objects; ``Limits`` bound each decode in time (``Budget``) and in audio kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import av
import numpy as np

from insight.inference.audio import repeat_pad, resample, split_windows
from insight.inference.model import AudioSpec
from insight.watcher.guard import Budget, open_regular

log = logging.getLogger("insight.watcher.decode")

MAX_BAD_PACKETS = 50
# One thread per decode (0: ffmpeg's frame threads). Those cost a FLAC decode ~20 % more CPU
# for no faster decode (mp3 has none), and the watcher runs several files at once anyway:
# bench/decode_threads.py.
DECODER_THREADS = 1


class DecodeFailed(Exception):
    """The file cannot be decoded (corrupt, unsupported, no audio stream)."""


@dataclass
class Limits:
    """Budgets of one file: size on disk, seconds of audio kept (full mode), decode time."""

    max_bytes: int | None = None
    max_audio_s: float | None = None
    budget: Budget = field(default_factory=Budget)


@dataclass
class Decoded:
    windows: np.ndarray  # [n, window_samples]
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray | None = None  # the whole track (full mode only)
    seeked: bool = False  # sampled mode decoded only around its windows


class _Source:
    """An opened audio file: the checked file object and PyAV's container on it."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.fh = open_regular(path, limits.max_bytes)  # Refused / OSError go to the caller
        try:
            self.container: Any = av.open(self.fh, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            self.fh.close()
            raise DecodeFailed(f"cannot open: {exc}") from exc
        stream = next((s for s in self.container.streams if s.type == "audio"), None)
        if stream is None:
            self.close()
            raise DecodeFailed("no audio stream")
        if DECODER_THREADS:
            stream.thread_count = DECODER_THREADS  # type: ignore[attr-defined]
        else:  # ffmpeg's choice: frame threads where the codec has them
            stream.thread_type = "AUTO"  # type: ignore[attr-defined]
        self.stream: Any = stream

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.fh.close()


def _metadata(container: Any, stream: Any) -> dict[str, Any]:
    meta = dict(stream.metadata or {})
    meta.update(container.metadata or {})
    return meta


# Sample formats read straight from a frame's planes (planar variants end in "p"), with the
# scale that maps them to [-1, 1] as ffmpeg's converter does; others go through ffmpeg.
_SAMPLE_TYPES: dict[str, tuple[type[np.generic], float, float]] = {
    "u8": (np.uint8, 128.0, 1 / 128),
    "s16": (np.int16, 0.0, 1 / 32768),
    "s32": (np.int32, 0.0, 1 / 2147483648),
    "flt": (np.float32, 0.0, 1.0),
    "dbl": (np.float64, 0.0, 1.0),
}


def _planes(frame: Any) -> tuple[str, list[np.ndarray]] | None:
    """``(format, views)`` of a decoded frame's samples without copying: one view per channel
    for planar formats, one interleaved view for packed ones; None for other formats.

    PyAV's ``to_ndarray`` stacks the planes into a new array and ffmpeg's converter costs a
    pass per frame: together ~40 % of decoding an mp3."""
    fmt = frame.format
    name = fmt.name[:-1] if fmt.is_planar else fmt.name
    if name not in _SAMPLE_TYPES:
        return None
    dtype = _SAMPLE_TYPES[name][0]
    channels, n = frame.layout.nb_channels, frame.samples
    if fmt.is_planar:
        return fmt.name, [np.frombuffer(p, dtype, n) for p in frame.planes[:channels]]
    return fmt.name, [np.frombuffer(frame.planes[0], dtype, n * channels)]


def _to_mono(planes: list[np.ndarray], fmt: str, channels: int) -> np.ndarray:
    """Whole planes (as ``_planes`` gives them) → mono float32 in [-1, 1].

    The channels are summed straight into float32 (``np.add`` converts as it goes), then
    offset, scaled and averaged: two passes over the mono signal instead of a float copy of
    every channel first (4 minutes of 16-bit stereo: 1.6x, bench/downmix.py). With power-of-two
    scales and integer samples the sums are exact, so the values are those of converting each
    channel first."""
    planar = fmt.endswith("p")
    _, offset, scale = _SAMPLE_TYPES[fmt[:-1] if planar else fmt]
    x = planes[0]
    chans = planes[:channels] if planar else [x[c::channels] for c in range(channels)]
    if len(chans) == 1:
        mono = np.asarray(chans[0], dtype=np.float32)  # new unless float32: then not written to
    else:
        mono = np.add(chans[0], chans[1], dtype=np.float32)
        for more in chans[2:]:
            np.add(mono, more, out=mono, dtype=np.float32)
    if offset:
        mono -= np.float32(offset * len(chans))
    if scale != 1.0:
        mono *= np.float32(scale)
    if len(chans) > 1:
        mono /= np.float32(len(chans))
    return mono


class _Runs:
    """Decoded samples at the decoder's rate, made mono and resampled to ``sr`` (soxr, as live
    streams are) one run of equal rate, format and layout at a time: once per track instead of
    per frame is ~2x faster than ffmpeg's swresample chunk by chunk, and a change mid-file
    stays correct."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.done: list[np.ndarray] = []
        self.key: tuple[int, str, int] = (0, "", 0)  # rate, format, channels
        self.chunks: list[list[np.ndarray]] = []
        self.samples_out = 0.0

    def add(self, planes: list[np.ndarray], rate: int, fmt: str, channels: int) -> None:
        if (rate, fmt, channels) != self.key:
            self._flush()
            self.key = (rate, fmt, channels)
        self.chunks.append(planes)
        self.samples_out += planes[0].shape[0] * len(planes) / channels * self.sr / rate

    def _flush(self) -> None:
        if self.chunks:
            rate, fmt, channels = self.key
            planes = [np.concatenate(p) for p in zip(*self.chunks, strict=True)]
            self.done.append(resample(_to_mono(planes, fmt, channels), rate, self.sr))
        self.chunks = []

    def audio(self) -> np.ndarray:
        self._flush()
        if not self.done:
            raise DecodeFailed("no decodable audio")
        return np.concatenate(self.done) if len(self.done) > 1 else self.done[0]


def _decode(
    container: Any,
    stream: Any,
    sr: int,
    start_s: float = 0.0,
    max_samples: int | None = None,
    budget: Budget | None = None,
    exact_skip: bool = False,
) -> np.ndarray:
    """Decode from ``start_s`` (after a seek) until ``max_samples`` mono samples at ``sr``;
    ``budget`` is checked per packet (time limit, shutdown). ``exact_skip``: the first sample
    kept is the one at ``start_s`` even when that is 0 (no seek tolerance)."""
    to_float: Any = None  # ffmpeg's converter, only for sample formats _planes does not read
    runs = _Runs(sr)
    bad = 0
    skip = start_s if exact_skip or start_s > 0 else None

    def take(frame: Any) -> None:
        nonlocal skip, to_float
        got = _planes(frame)
        if got is None:
            if to_float is None:
                to_float = av.AudioResampler(format="flt", layout=frame.layout.name)
            for out in to_float.resample(frame):
                take(out)
            return
        fmt, planes = got
        rate, channels = int(frame.sample_rate), frame.layout.nb_channels
        if skip is not None:
            t = float(frame.pts * frame.time_base) if frame.pts is not None else None
            if t is not None and t + frame.samples / rate <= skip:
                return
            if t is not None and t < skip:
                cut = round((skip - t) * rate)
                planes = [p[cut * (channels if len(planes) == 1 else 1) :] for p in planes]
            skip = None
        runs.add(planes, rate, fmt, channels)

    for packet in container.demux(stream):
        if budget is not None:
            budget.check()
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise DecodeFailed(f"too many undecodable packets: {exc}") from exc
            continue
        for frame in frames:
            take(frame)
        if max_samples is not None and runs.samples_out >= max_samples:
            break
    else:
        for out in to_float.resample(None) if to_float is not None else ():
            take(out)
    x = runs.audio()
    return x[:max_samples] if max_samples is not None else x


def duration_of(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def spread(x: np.ndarray, n: int, window: int, padding: str = "repeatpad") -> np.ndarray:
    """``n`` windows spread evenly over ``x`` (all windows when ``x`` is short)."""
    if x.shape[0] <= window * n:
        return split_windows(x, window, window, min_tail_samples=window // 4, padding=padding)
    starts = np.linspace(0, x.shape[0] - window, n + 2)[1:-1].astype(int)
    return np.stack([x[s : s + window] for s in starts])


def decode_full(path: Path, spec: AudioSpec, limits: Limits | None = None) -> Decoded:
    """Every window of the track (its first ``max_audio_s`` seconds when it is longer)."""
    limits = limits or Limits()
    sr = spec.sample_rate
    cap = int(limits.max_audio_s * sr) if limits.max_audio_s is not None else None
    src = _Source(path, limits)
    try:
        meta = _metadata(src.container, src.stream)
        try:
            x = _decode(src.container, src.stream, sr, max_samples=cap, budget=limits.budget)
        except av.FFmpegError as exc:
            raise DecodeFailed(str(exc)) from exc
    finally:
        src.close()
    if cap is not None and x.shape[0] >= cap:
        log.info("audio_capped path=%s kept_s=%.0f", path, limits.max_audio_s)
    windows = split_windows(x, spec.window, spec.hop, padding=spec.padding)
    return Decoded(windows=windows, duration_s=x.shape[0] / sr, metadata=meta, audio=x)


PREROLL_S = 0.5  # decoded before each window and dropped: primes decoder and resampler
TAIL_S = 0.05  # decoded past each window: the resampler's end transient falls outside it
MP3 = ("mp3", "mp3float")


def window_starts(duration_s: float, n: int, window_s: float) -> list[float]:
    """Where ``decode_sampled``'s windows begin: ``n`` spread evenly, none at either end."""
    return [(duration_s - window_s) * (i + 1) / (n + 1) for i in range(n)]


def _probe(container: Any, stream: Any) -> tuple[float, bool]:
    """``(t0, exact)``: the timestamp of the first sample a full decode keeps (mp3 drops the
    encoder's priming and starts later than 0, a seek does not), and whether a seek lands
    where it says. mp3 seeks by byte estimate, exact only at a constant bitrate (packet sizes
    differ by the padding byte at most); flac, ogg, mp4 and wav seek by index or granule."""
    t0: float | None = None
    sizes: list[int] = []
    for packet in container.demux(stream):
        if packet.size:
            sizes.append(packet.size)
        if t0 is None:
            for frame in packet.decode():
                if frame.pts is not None:
                    t0 = float(frame.pts * frame.time_base)
                    break
        if t0 is not None and (stream.codec_context.name not in MP3 or len(sizes) >= 24):
            break
    exact = t0 is not None and (
        stream.codec_context.name not in MP3 or max(sizes[1:]) - min(sizes[1:]) <= 1
    )
    return t0 or 0.0, exact


def _window_at(
    container: Any, stream: Any, t0: float, start_s: float, spec: AudioSpec, budget: Budget
) -> np.ndarray:
    """The ``window`` samples a full decode has from ``start_s``: decoding starts
    ``PREROLL_S`` earlier on an input sample that is also an output sample (147 at 44.1 kHz
    for 48 kHz), so the resampler's grid is the full decode's and only its settled output is
    kept."""
    sr, window = spec.sample_rate, spec.window
    rate = int(stream.codec_context.sample_rate or stream.rate)
    grid = rate // gcd(rate, sr)
    first_in = max(0, int((start_s - PREROLL_S) * rate) // grid * grid)
    first_out = first_in * sr // rate
    skip = round(start_s * sr) - first_out
    begin = t0 + first_in / rate
    container.seek(int(begin / stream.time_base), stream=stream, backward=True)
    seg = _decode(
        container, stream, sr, begin, skip + window + int(TAIL_S * sr), budget, exact_skip=True
    )[skip : skip + window]
    return repeat_pad(seg, window, spec.padding) if 0 < seg.shape[0] < window else seg


def decode_sampled(path: Path, n: int, spec: AudioSpec, limits: Limits | None = None) -> Decoded:
    """``n`` windows spread over the track, decoding only around them (a seek per window);
    the whole file where seeking is inexact (variable-bitrate mp3) or the duration unknown."""
    limits = limits or Limits()
    budget = limits.budget
    sr, window = spec.sample_rate, spec.window
    window_s = window / sr
    cap = int(limits.max_audio_s * sr) if limits.max_audio_s is not None else None
    src = _Source(path, limits)
    container, stream = src.container, src.stream
    try:
        meta = _metadata(container, stream)
        duration = duration_of(container, stream)
        t0, exact = _probe(container, stream) if duration is not None else (0.0, False)
        if exact and duration is not None and duration > window_s * (n + 1):
            try:
                out = [
                    _window_at(container, stream, t0, s, spec, budget)
                    for s in window_starts(duration, n, window_s)
                ]
                if all(w.shape[0] == window for w in out):
                    return Decoded(np.stack(out), duration, meta, seeked=True)
            except (av.FFmpegError, DecodeFailed) as exc:
                log.debug("seek_failed path=%s error=%s", path, exc)
        container.seek(0)
        x = _decode(container, stream, sr, max_samples=cap, budget=budget)
        return Decoded(spread(x, n, window, spec.padding), x.shape[0] / sr, meta)
    except av.FFmpegError as exc:
        raise DecodeFailed(str(exc)) from exc
    finally:
        src.close()


def decode_in_mode(
    path: Path, mode: str, sampled_windows: int, spec: AudioSpec, limits: Limits | None = None
) -> Decoded:
    """The watcher's mode: ``sampled`` (``sampled_windows`` windows) or else every window."""
    if mode == "sampled":
        return decode_sampled(path, sampled_windows, spec, limits)
    return decode_full(path, spec, limits)
