"""What an embedding model offers the rest of insight, whatever its family.

The pool, the watcher, the stream sessions and ``embed-audio`` only see this protocol: the
sample rate, the window and the dimension come from the loaded model (its feature-extractor
config), never from a constant of theirs. A family (:mod:`insight.inference.families`) says
how to recognise a model folder and which class loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class AudioSpec:
    """How a model wants its audio: mono at ``sample_rate``, ``window`` samples every ``hop``;
    a window short of ``window`` samples is padded as ``padding`` says (``repeat_pad``)."""

    sample_rate: int
    window: int
    hop: int
    padding: str = "repeatpad"


@runtime_checkable
class EmbeddingModel(Protocol):
    """An audio tower (and usually a text tower) giving L2-normalised float32 vectors."""

    model_id: str
    model_dir: Path  # the folder it was loaded from
    family: str
    dim: int
    device: str
    quantized: bool

    @property
    def sample_rate(self) -> int:
        """The rate every audio input must have (Hz)."""

    @property
    def max_window_samples(self) -> int:
        """The model's audio input length; a window is never longer."""

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (``embed_text`` works)."""

    @property
    def loaded(self) -> bool: ...

    def audio_spec(self, window_s: float, hop_s: float) -> AudioSpec:
        """Window and hop in samples at the model rate for the configured seconds."""

    def split_windows(self, mono: np.ndarray, spec: AudioSpec) -> np.ndarray:
        """Mono audio at the model rate → windows ``[B, spec.window]``, padded as it pads."""

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Windows ``[B, N]`` at the model rate → ``[B, dim]``."""

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Texts → ``[N, dim]``."""

    def warmup(self) -> None:
        """Create the sessions and run each once."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def track_vector(window_vectors: np.ndarray) -> np.ndarray:
    """A track's vector: the L2-normalised mean of its window vectors (every family)."""
    return l2_normalize(np.asarray(window_vectors, dtype=np.float32).mean(axis=0))


def embed_audio(
    model: EmbeddingModel, mono: np.ndarray, window_s: float, hop_s: float
) -> tuple[np.ndarray, int]:
    """A track vector of ``mono`` (at the model rate) and the number of windows it was made of,
    synchronously; the pool's ``embed_audio`` is the batched, async twin."""
    windows = model.split_windows(mono, model.audio_spec(window_s, hop_s))
    return track_vector(model.embed_windows(windows)), int(windows.shape[0])
