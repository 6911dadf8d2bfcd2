"""Model families as data: how to recognise a model folder, which class loads it, and the
feature-extractor defaults for a folder that has no ``preprocessor_config.json``.

As fastembed does, a family is a record, not a subclass hierarchy: both families below run on
the one ONNX base (:class:`insight.inference.clap.ClapModel`); what differs is data. A folder
names its family in ``config.json`` (``insight_family``, or the ``model_type`` it was saved
with); a folder that names none is transformers' CLAP, the first family. Adding a family:
docs/model-families.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.errors import NotReady

if TYPE_CHECKING:
    from insight.config import ModelSettings
    from insight.inference.model import EmbeddingModel

Loader = Callable[..., "EmbeddingModel"]


@dataclass(frozen=True)
class ModelFamily:
    id: str
    name: str
    model_types: tuple[str, ...]  # config.json ``model_type`` values that mean this family
    mel_defaults: dict[str, Any] = field(default_factory=dict)
    loader: str = "insight.inference.clap:ClapModel"  # ``module:Class`` with ``load(...)``
    note: str = ""

    def load(
        self,
        model_dir: Path,
        settings: ModelSettings,
        model_id: str | None = None,
        cache_dir: Path | None = None,
    ) -> EmbeddingModel:
        import importlib

        module, _, cls = self.loader.partition(":")
        loader = getattr(importlib.import_module(module), cls)
        model: EmbeddingModel = loader.load(
            model_dir, settings, model_id, cache_dir, family=self.id, mel_defaults=self.mel_defaults
        )
        return model


HF_CLAP = ModelFamily(
    id="hf-clap",
    name="CLAP (LAION, transformers ClapModel)",
    model_types=("clap",),
    # transformers' ClapFeatureExtractor defaults (unfused checkpoints): 48 kHz, 10 s
    mel_defaults={"sampling_rate": 48_000, "max_length_s": 10, "padding": "repeatpad"},
    note="512-d, RoBERTa text tower, HTSAT audio tower",
)

MS_CLAP_2023 = ModelFamily(
    id="msclap-2023",
    name="Microsoft CLAP 2023 (msclap)",
    model_types=("msclap", "msclap-2023"),
    # msclap's config_2023.yml (44.1 kHz, 7 s) + the HTSAT front end of its models/config.py,
    # whose mel filterbank is made for 32 kHz whatever the audio's rate
    mel_defaults={
        "sampling_rate": 44_100,
        "max_length_s": 7,
        "nb_max_samples": 308_700,
        "n_fft": 1024,
        "hop_length": 320,
        "n_mels": 64,
        "frequency_min": 50,
        "frequency_max": 14_000,
        "mel_sampling_rate": 32_000,
        "padding": "repeat",
    },
    note="1024-d, GPT-2 text tower, HTSAT audio tower",
)

FAMILIES: tuple[ModelFamily, ...] = (HF_CLAP, MS_CLAP_2023)
DEFAULT = HF_CLAP


def family(family_id: str) -> ModelFamily:
    for f in FAMILIES:
        if f.id == family_id:
            return f
    known = ", ".join(f.id for f in FAMILIES)
    raise NotReady(f"unknown model family {family_id!r} (known: {known})")


def _config(root: Path) -> dict[str, Any]:
    for p in (root / "config.json", root / "onnx" / "config.json"):
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except ValueError:
                return {}  # find_model_files reports the broken file
            return data if isinstance(data, dict) else {}
    return {}


def family_of(model_dir: Path) -> ModelFamily:
    """The family of a model folder: named by ``insight_family``, or by ``model_type``."""
    cfg = _config(Path(model_dir))
    named = cfg.get("insight_family")
    if isinstance(named, str):
        return family(named)
    model_type = cfg.get("model_type")
    for f in FAMILIES:
        if model_type in f.model_types:
            return f
    return DEFAULT


def load_model(
    model_dir: Path,
    settings: ModelSettings,
    model_id: str | None = None,
    cache_dir: Path | None = None,
) -> EmbeddingModel:
    """Load the model in ``model_dir`` with its family's loader."""
    return family_of(model_dir).load(model_dir, settings, model_id, cache_dir)
