"""Two-tower ONNX models (CLAP and its kin): lazily loaded sessions, configured providers.

``ClapModel`` is the one ONNX base of every family (:mod:`insight.inference.families`): two
towers (``text_model.onnx``, ``audio_model.onnx``), a ``tokenizer.json`` and the feature
extractor of ``preprocessor_config.json``; a family only supplies defaults and its id.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from threadpoolctl import threadpool_limits

from insight.config import ModelSettings
from insight.errors import BadRequest, NotReady
from insight.inference import fast_graph
from insight.inference.audio import MelConfig, MelExtractor, split_windows
from insight.inference.model import AudioSpec, l2_normalize, track_vector
from insight.inference.model_dir import ModelFiles, find_model_files
from insight.inference.ort_options import session_options, text_session_kwargs
from insight.inference.text import Tokenizer

log = logging.getLogger(__name__)

# (settings flag, ORT provider, device name), in priority order.
PROVIDERS = (
    ("enable_cuda", "CUDAExecutionProvider", "CUDA"),
    ("enable_rocm", "ROCMExecutionProvider", "ROCm"),
    ("enable_coreml", "CoreMLExecutionProvider", "CoreML"),
    ("enable_directml", "DmlExecutionProvider", "DirectML"),
    ("enable_openvino", "OpenVINOExecutionProvider", "OpenVINO"),
)
TEXT_BATCH = 32
# Fixed inputs on which a rewritten graph and int8 towers are checked against the originals.
CHECK_TEXTS = [
    "Queen - Bohemian Rhapsody. Album: A Night at the Opera. Genres: Rock, Progressive Rock",
    "calm piano",
    "Unknown Artist - Track",
]
CHECK_WINDOWS = 8  # the fp32 audio batch, so the check covers the batch size that runs


def auto_audio_batch(device: str, quantized: bool) -> int:
    """Windows per audio-tower run when not configured.

    Measured on 2 cores (folder scan of 4-minute tracks, BENCHMARKS.md): the int8 tower runs
    ~11 % faster one window at a time than 8 at a time, its activations stay in cache; the
    fp32 tower, bound by its matrix products, is ~8 % faster 8 at a time. A GPU wants them all.
    """
    if device != "CPU":
        return 32
    return 1 if quantized else 8


def select_providers(settings: ModelSettings) -> tuple[list[str], str]:
    """Requested providers that this onnxruntime has, then CPU; one warning for the rest."""
    available = set(ort.get_available_providers())
    wanted = [(p, d) for flag, p, d in PROVIDERS if getattr(settings, flag, False)]
    chosen = [(p, d) for p, d in wanted if p in available]
    missing = [d for p, d in wanted if p not in available]
    providers = [p for p, _ in chosen] + ["CPUExecutionProvider"]
    device = chosen[0][1] if chosen else "CPU"
    if missing:
        log.warning(
            "execution_provider_unavailable requested=%s using=%s available=%s "
            "hint='install onnxruntime-gpu (pip install insight[gpu]) or the provider's build'",
            ",".join(missing),
            device,
            ",".join(sorted(available)),
        )
    return providers, device


class _LazySession:
    """One ``InferenceSession``, created on first use by exactly one thread."""

    def __init__(
        self,
        path: Path,
        providers: list[str],
        options: ort.SessionOptions,
        dim: int,
        extra: dict[str, Any] | None = None,
    ):
        self.path = path
        self._providers = providers
        self._options = options
        self._dim = dim
        self._extra = extra or {}  # more InferenceSession arguments (disabled_optimizers)
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def get(self) -> ort.InferenceSession:
        s = self._session
        if s is not None:
            return s
        with self._lock:
            if self._session is None:
                try:
                    s = ort.InferenceSession(
                        str(self.path),
                        sess_options=self._options,
                        providers=self._providers,
                        **self._extra,
                    )
                except Exception as exc:  # corrupt or incompatible file
                    raise NotReady(f"cannot load {self.path.name}: {exc}") from exc
                if s.get_providers()[0] != self._providers[0]:  # it said why on stderr
                    log.warning(
                        "execution_provider_fallback model=%s requested=%s using=%s "
                        "hint='onnxruntime could not start it: missing CUDA or cuDNN libraries?'",
                        self.path.name,
                        self._providers[0],
                        s.get_providers()[0],
                    )
                out = s.get_outputs()[0].shape
                if len(out) != 2 or (isinstance(out[-1], int) and out[-1] != self._dim):
                    raise NotReady(
                        f"{self.path.name} outputs shape {out}, expected [batch, {self._dim}]"
                    )
                self._session = s
            return self._session


def single_threaded_blas() -> None:
    """Keep numpy's BLAS on one thread in a process that runs the model.

    ONNX Runtime owns the cores. OpenBLAS threads busy-wait after each small matmul (the mel
    filterbank), and on 2 cores that spinning took ~40 ms from every 10 s window (~30 %).
    """
    threadpool_limits(limits=1, user_api="blas")


class ClapModel:
    """Text and audio towers of one model; every vector is L2-normalised float32.

    Implements :class:`insight.inference.model.EmbeddingModel`.
    """

    def __init__(
        self,
        files: ModelFiles,
        settings: ModelSettings,
        model_id: str | None = None,
        family: str = "hf-clap",
        mel_defaults: dict[str, Any] | None = None,
    ):
        self.files = files
        self.model_dir = files.root
        self.model_id = model_id or files.root.name
        self.family = family
        self.dim = files.dim
        self.providers, self.device = select_providers(settings)
        self.tokenizer = Tokenizer.from_model_dir(files.root)
        self.mel_config = MelConfig.from_model_dir(files.root, mel_defaults)
        self.mel = MelExtractor(self.mel_config)
        self._settings = settings
        self._options = session_options(settings.threads)
        q = files.quantized
        self.use(fast_graph.Towers(files.text_model, files.audio_model, q, q, "as found"))

    def use(self, towers: fast_graph.Towers) -> None:
        """Run ``towers`` (before the first inference: sessions are made lazily)."""
        self.towers = towers
        self.quantized = towers.audio_int8
        self.text_quantized = towers.text_int8
        self.audio_batch = self._settings.audio_batch or auto_audio_batch(
            self.device, self.quantized
        )
        extra = text_session_kwargs() if self.device == "CPU" else None  # measured on CPU
        self._text = _LazySession(towers.text, self.providers, self._options, self.dim, extra)
        self._audio = _LazySession(towers.audio, self.providers, self._options, self.dim)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        settings: ModelSettings,
        model_id: str | None = None,
        cache_dir: Path | None = None,
        family: str = "hf-clap",
        mel_defaults: dict[str, Any] | None = None,
    ) -> ClapModel:
        """The model in ``model_dir``. With ``cache_dir``, a folder we did not export runs its
        rewritten graph and int8 where accurate (:mod:`insight.inference.fast_graph`)."""
        single_threaded_blas()
        root = Path(model_dir)
        rewrite = cache_dir is not None and fast_graph.onnx_available()
        if settings.quantized is True and not rewrite:
            files = find_model_files(root, quantized=True)
        else:
            try:
                files = find_model_files(root, quantized=False)
            except NotReady:  # only the int8 files are there
                files = find_model_files(root, quantized=True)
        model = cls(files, settings, model_id, family, mel_defaults)
        export = fast_graph.export_report(root, files.config)
        if export is not None:
            model.use(fast_graph.for_export(files, model.int8_setting, export))
        elif rewrite and cache_dir is not None:
            try:
                model.use(model._cached_towers(files, cache_dir))
            except Exception as exc:  # a read-only data dir, a full disk: run the files as is
                log.warning("graph_cache_unavailable dir=%s error=%s", cache_dir, exc)
        log.info(
            "model_towers dir=%s how=%s text=%s audio=%s",
            root,
            model.towers.how,
            model.towers.text.name,
            model.towers.audio.name,
        )
        return model

    def _cached_towers(self, files: ModelFiles, cache_dir: Path) -> fast_graph.Towers:
        ids, mask = self.tokenizer.encode_batch(CHECK_TEXTS)
        text_feed = {"input_ids": ids, "attention_mask": mask}
        from insight.inference.export import _synthetic_audio

        sr = self.mel_config.sampling_rate
        clips = _synthetic_audio(sr, self.mel_config.nb_max_samples / sr, CHECK_WINDOWS)
        feats = self.mel(np.stack(clips))
        return fast_graph.cached(files, cache_dir, self.int8_setting, text_feed, feats)

    @property
    def int8_setting(self) -> bool | None:
        """``quantized`` as it applies here: unset means "int8 where accurate" on the CPU and
        fp32 on a GPU provider. Dynamic int8 is a CPU speed-up: ONNX Runtime has its
        ``DynamicQuantizeMatMul`` for the CPU only, so on a GPU those nodes would run on the
        host, their tensors copied there and back."""
        q = self._settings.quantized
        return False if q is None and self.device != "CPU" else q

    @property
    def loaded(self) -> bool:
        return self._text.loaded and self._audio.loaded

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sampling_rate

    @property
    def max_window_samples(self) -> int:
        return self.mel_config.nb_max_samples

    @property
    def has_text(self) -> bool:
        return True

    def warmup(self) -> None:
        """Create both sessions and run each once."""
        self.embed_text(["warm up"])
        self.embed_features(
            np.full((1, 1, self.mel_config.frames, self.mel_config.n_mels), -60.0, np.float32)
        )

    # --- text ---------------------------------------------------------------------------

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """``[N, dim]``; texts are batched by length so padding stays small."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        session = self._text.get()
        names = [i.name for i in session.get_inputs()]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), TEXT_BATCH):
            idx = order[start : start + TEXT_BATCH]
            ids, mask = self.tokenizer.encode_batch([texts[i] for i in idx])
            feed: dict[str, Any] = {}
            for name in names:
                feed[name] = mask if "attention" in name else ids
            out[idx] = self._run(session, feed, len(idx), "text_embeds")
        return l2_normalize(out)

    # --- audio --------------------------------------------------------------------------

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Log-mel features ``[B, 1, F, n_mels]`` → ``[B, dim]``."""
        feats = np.asarray(feats, dtype=np.float32)
        session = self._audio.get()
        inputs = session.get_inputs()
        channels = inputs[0].shape[1] if len(inputs[0].shape) == 4 else 1
        out = np.empty((feats.shape[0], self.dim), dtype=np.float32)
        for start in range(0, feats.shape[0], self.audio_batch):
            chunk = feats[start : start + self.audio_batch]
            if isinstance(channels, int) and channels > 1:  # fused models: 4 copies, as HF
                chunk = np.repeat(chunk, channels, axis=1)
            feed: dict[str, Any] = {}
            for inp in inputs:
                if "longer" in inp.name:
                    feed[inp.name] = np.zeros((chunk.shape[0], 1), dtype=bool)
                else:
                    feed[inp.name] = chunk
            out[start : start + chunk.shape[0]] = self._run(
                session, feed, chunk.shape[0], "audio_embeds"
            )
        return l2_normalize(out)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows ``[B, N]`` at the model rate → ``[B, dim]`` (one vector per window)."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[0] == 0:
            raise BadRequest(f"expected audio windows [B, N], got shape {windows.shape}")
        out = np.empty((windows.shape[0], self.dim), dtype=np.float32)
        for start in range(0, windows.shape[0], self.audio_batch):
            feats = self.mel(windows[start : start + self.audio_batch])
            out[start : start + feats.shape[0]] = self.embed_features(feats)
        return out

    track_vector = staticmethod(track_vector)

    def audio_spec(self, window_s: float, hop_s: float) -> AudioSpec:
        """Window and hop in samples at the model rate. A window is at most the model's input
        (7 s for msclap); one cut to it takes its hop along, so the configured overlap (none
        by default) stays and no audio falls between windows."""
        sr = self.sample_rate
        wanted = max(1, round(window_s * sr))
        window = min(wanted, self.max_window_samples)
        hop = max(1, round(hop_s * sr * window / wanted))
        return AudioSpec(sr, window, hop, self.mel_config.padding)

    def split_windows(self, mono: np.ndarray, spec: AudioSpec) -> np.ndarray:
        return split_windows(mono, spec.window, spec.hop, padding=spec.padding)

    def _run(
        self, session: ort.InferenceSession, feed: dict[str, Any], rows: int, prefer: str
    ) -> np.ndarray:
        names = [o.name for o in session.get_outputs()]
        name = prefer if prefer in names else names[0]
        (y,) = session.run([name], feed)
        y = np.asarray(y, dtype=np.float32)
        if y.shape != (rows, self.dim):
            raise NotReady(
                f"model output {name} has shape {y.shape}, expected ({rows}, {self.dim})"
            )
        return y
