"""Microsoft CLAP 2023 (the ``msclap`` package) with random weights, for tests and benches.

Imports torch, transformers and msclap: never import this from runtime code.

msclap 1.3.4 pins ``transformers<5`` and ``numpy<2`` and its ``CLAPWrapper`` imports torchaudio,
which has no build for the torch the parity tests pin; its model code (``msclap.models``) runs
as it is on transformers 5. So msclap is installed with ``--no-deps`` (pyproject's dev extra
lists its real runtime needs: torchlibrosa, librosa, pyyaml) and ``import_msclap`` loads its
package without running ``msclap/__init__.py``; ``wrapper`` gives ``CLAPWrapper`` with a
placeholder torchaudio that fails if anything calls it (its preprocessing does not).

The GPT-2 text encoder msclap fetches from the hub (``AutoModel.from_pretrained("gpt2")``) is
built here from a config instead, with a small byte-level BPE in which ``!`` is id 0, as in
GPT-2 (msclap pads with ``!`` and finds a text's end as the last id that is not 0).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

from insight.testing.tiny_clap import _CORPUS

END = "<|endoftext|>"
SMALL_GPT2 = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128}
FULL_GPT2 = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
# HTSAT at a quarter of the width and one block per stage; spec_size and mel bins as msclap's
SMALL_HTSAT = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4]}


def import_msclap() -> Any:
    """``msclap.models`` without ``msclap/__init__.py`` (which imports torchaudio)."""
    if "msclap" not in sys.modules:
        spec = importlib.util.find_spec("msclap")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("msclap is not installed (pip install --no-deps msclap==1.3.4)")
        pkg = types.ModuleType("msclap")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["msclap"] = pkg
    import msclap.models.clap as clap_module

    return clap_module


def wrapper_class() -> Any:
    """msclap's ``CLAPWrapper`` class (its preprocessing code), torchaudio or not."""
    import_msclap()
    if importlib.util.find_spec("torchaudio") is None and "torchaudio" not in sys.modules:
        ta = types.ModuleType("torchaudio")

        def _absent(*_a: Any, **_k: Any) -> Any:
            raise RuntimeError("torchaudio is not installed: pass audio in memory")

        ta.load = _absent  # type: ignore[attr-defined]
        transforms = types.ModuleType("torchaudio.transforms")
        transforms.Resample = _absent  # type: ignore[attr-defined]
        ta.transforms = transforms  # type: ignore[attr-defined]
        sys.modules["torchaudio"] = ta
        sys.modules["torchaudio.transforms"] = transforms
    from msclap.CLAPWrapper import CLAPWrapper

    return CLAPWrapper


def build_gpt2_tokenizer(vocab_size: int = 600) -> Any:
    """A byte-level BPE with GPT-2's layout: ``!`` is id 0, ``<|endoftext|>`` the last id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS), trainer=trainer)
    tok.add_special_tokens([END])
    if tok.token_to_id("!") != 0:
        raise RuntimeError("the byte-level alphabet did not put '!' first")
    return tok


def hf_gpt2_tokenizer(tok_json: Path) -> Any:
    """The tokenizer as msclap sets it up: GPT-2's, with ``!`` as the pad token.

    transformers 5 dropped ``encode_plus`` (msclap calls it), which was ``__call__`` on one text.
    """
    from transformers import PreTrainedTokenizerFast

    class Gpt2Tokenizer(PreTrainedTokenizerFast):  # type: ignore[misc]
        def encode_plus(self, text: str, **kwargs: Any) -> Any:
            return self(text, **kwargs)

    tok = Gpt2Tokenizer(tokenizer_file=str(tok_json), eos_token=END, bos_token=END)
    tok.add_special_tokens({"pad_token": "!"})
    return tok


class _Gpt2FromConfig:
    """Stands in for transformers' ``AutoModel`` while msclap builds its text encoder."""

    config: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_pretrained(cls, name: str) -> Any:
        from transformers import GPT2Config, GPT2Model

        return GPT2Model(GPT2Config(**cls.config))


def build_msclap(small: bool = True, seed: int = 0, vocab_size: int = 601) -> Any:
    """msclap's ``CLAP`` (config_2023.yml) with random weights, in eval mode."""
    import torch

    clap_module = import_msclap()
    from msclap.models import htsat

    end = vocab_size - 1  # <|endoftext|>
    gpt2 = {
        **(SMALL_GPT2 if small else FULL_GPT2),
        "vocab_size": vocab_size,
        "bos_token_id": end,
        "eos_token_id": end,
    }
    torch.manual_seed(seed)
    _Gpt2FromConfig.config = gpt2
    real = clap_module.AutoModel
    clap_module.AutoModel = _Gpt2FromConfig
    try:
        model = clap_module.CLAP(
            audioenc_name="HTSAT",
            sample_rate=44_100,
            window_size=1024,
            hop_size=320,
            mel_bins=64,
            fmin=50,
            fmax=8000,
            classes_num=527,
            out_emb=768,
            text_model="gpt2",
            transformer_embed_dim=gpt2["n_embd"],
            d_proj=1024,
        )
    finally:
        clap_module.AutoModel = real
    if small:
        swin = htsat.HTSAT_Swin_Transformer(config=htsat.config, **SMALL_HTSAT)
        model.audio_encoder.base.htsat = swin
        model.audio_encoder.projection = clap_module.Projection(swin.num_features, 1024)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as trained ones
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-2.0, 2.0)
                m.running_var.uniform_(0.5, 4.0)
    return model.eval()
