"""Export Microsoft CLAP 2023 (``msclap``) to our ONNX model folder (``export`` extra + msclap).

The second model family (:mod:`insight.inference.families`): the same folder layout and the same
runtime class as transformers' CLAP, so only the data differs. The audio tower takes the log-mel
features our numpy extractor makes (msclap computes them in torch with torchlibrosa: periodic
Hann, centred reflect-padded STFT, power, Slaney mel filters made for 32 kHz, ``10*log10``) and
runs the rest of msclap's HTSAT (``bn0``, the bicubic stretch to 1024 frames, the Swin
stages, the latent mean) and its projection. The text tower is msclap's ``TextEncoder``: GPT-2,
the hidden state at the last id that is not 0, the projection. Texts get msclap's
`` <|endoftext|>`` suffix (``text_suffix`` in config.json). Vectors are L2-normalised at run time,
as msclap's ``compute_similarity`` does.

From msclap's own weights (needs the hub): ``CLAPWrapper(version="2023").clap`` and its
``tokenizer.backend_tokenizer`` saved as ``tokenizer.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from insight.inference.export import (
    EXPORTER_VERSION,
    VERIFY_TEXTS,
    ExportError,
    _require_export_deps,
    _synthetic_audio,
    export_folder,
)
from insight.inference.families import MS_CLAP_2023

TEXT_SUFFIX = " <|endoftext|>"


def preprocessor_config() -> dict[str, Any]:
    """What our feature extractor needs: msclap's config_2023.yml + HTSAT's front end."""
    return {"feature_extractor_type": "MsClapLogMel", **MS_CLAP_2023.mel_defaults}


def export_msclap(
    model: Any,
    tokenizer_json: Path,
    out_dir: Path,
    quantize: str | None = None,
    verify: bool = True,
    opset: int = 20,
    source: str = "msclap",
) -> Path:
    """Convert msclap's ``CLAP`` module ``model`` (eval mode) into ``out_dir``."""
    if quantize not in (None, "int8"):
        raise ExportError(f"unsupported quantization {quantize!r}; use 'int8'")
    torch, _ = _require_export_deps()
    from insight.inference.audio import MelConfig, MelExtractor
    from insight.inference.text import Tokenizer

    t0 = time.perf_counter()
    model = model.eval()
    htsat, projection = model.audio_encoder.base.htsat, model.audio_encoder.projection
    gpt2 = model.caption_encoder.base
    dim = int(projection.linear2.out_features)

    class TextTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.enc = model.caption_encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.enc({"input_ids": input_ids, "attention_mask": attention_mask})

    class AudioTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        """HTSAT's eval forward after ``logmel_extractor`` (clips up to its 1024 frames)."""

        def __init__(self) -> None:
            super().__init__()
            self.htsat, self.projection = htsat, projection

        def forward(self, input_features: Any) -> Any:
            x = self.htsat.bn0(input_features.transpose(1, 3)).transpose(1, 3)
            x = self.htsat.reshape_wav2img(x)
            return self.projection(self.htsat.forward_features(x)["latent_output"])

    from tokenizers import Tokenizer as HFTokenizer

    max_text = int(gpt2.config.n_positions)
    tok = Tokenizer(HFTokenizer.from_file(str(tokenizer_json)), 0, max_text, TEXT_SUFFIX)
    ids, mask = tok.encode_batch(VERIFY_TEXTS)
    mel_cfg = MelConfig.from_dict(preprocessor_config())
    sr = mel_cfg.sampling_rate
    clips = _synthetic_audio(sr, mel_cfg.nb_max_samples / sr, 3)
    check_feats = MelExtractor(mel_cfg)(np.stack(clips))

    report: dict[str, Any] = {
        "source": source,
        "family": MS_CLAP_2023.id,
        "exporter_version": EXPORTER_VERSION,
        "opset": opset,
        "quantize": quantize,
    }

    def write_files(tmp: Path) -> None:
        shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
        (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2))
        config = {
            "model_type": "msclap",
            "insight_family": MS_CLAP_2023.id,
            "projection_dim": dim,
            "max_text_length": max_text,
            "pad_token_id": 0,  # msclap pads with "!" (GPT-2 id 0) and reads the last other id
            "text_suffix": TEXT_SUFFIX,
            "text_config": {"model_type": "gpt2", **_gpt2_summary(gpt2.config)},
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

    return export_folder(
        Path(out_dir),
        TextTower(),
        AudioTower(),
        {"input_ids": ids, "attention_mask": mask},
        check_feats[:2],
        write_files,
        report,
        t0=t0,
        opset=opset,
        quantize=quantize,
        verify=verify,
        check_feats=check_feats,  # a batch that was not traced
        max_sequence=max_text,
        audio_patches=[_batch_safe_windows],
    )


@contextmanager
def _batch_safe_windows() -> Iterator[None]:
    """msclap's ``window_reverse`` finds the batch as ``int(n / (H * W / ws / ws))``: traced, the
    ``int`` of a symbolic float fixes the batch to the traced one, and a graph run on another
    batch mixes windows of different clips (measured: cosine 0.999 at batch 4, 0.995 at 8 on
    the full-size model). The same value as an integer division stays symbolic."""
    from msclap.models import htsat

    original = htsat.window_reverse

    def window_reverse(windows: Any, window_size: int, H: int, W: int) -> Any:
        batch = windows.shape[0] // ((H // window_size) * (W // window_size))
        x = windows.view(batch, H // window_size, W // window_size, window_size, window_size, -1)
        return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(batch, H, W, -1)

    htsat.window_reverse = window_reverse
    try:
        yield
    finally:
        htsat.window_reverse = original


def _gpt2_summary(cfg: Any) -> dict[str, int]:
    keys = ("vocab_size", "n_embd", "n_layer", "n_head")
    return {k: int(getattr(cfg, k)) for k in keys}
