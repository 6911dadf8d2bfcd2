"""A small random transformers CLAP folder sharing the tiny tokenizer (tests and benches only).

Imports torch and transformers: never import this from runtime code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from insight.testing.tiny_clap import PREPROCESSOR_CONFIG, build_tiny_tokenizer

SMALL_TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
    "pad_token_id": 1,
}
SMALL_AUDIO = {
    "depths": [2, 2, 1, 1],  # two stages with shifted windows, as in the full model
    "num_attention_heads": [1, 2, 2, 4],
    "patch_embeds_hidden_size": 16,
    "hidden_size": 128,
    "spec_size": 256,
    "window_size": 8,
    "num_mel_bins": 64,
    "enable_fusion": False,
}


def hf_tokenizer(tok_json: Path | None = None, backend: Any = None) -> Any:
    """transformers' RoBERTa tokenizer around ``backend`` (a file, or the tiny BPE by default)."""
    from tokenizers import Tokenizer
    from transformers import RobertaTokenizerFast

    if backend is None:
        backend = Tokenizer.from_file(str(tok_json)) if tok_json else build_tiny_tokenizer()
    return RobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def hf_feature_extractor() -> Any:
    from transformers import ClapFeatureExtractor

    skip = ("feature_extractor_type", "nb_max_samples")
    kwargs: dict[str, Any] = {k: v for k, v in PREPROCESSOR_CONFIG.items() if k not in skip}
    return ClapFeatureExtractor(**kwargs)


def build_hf_clap(
    out_dir: Path,
    small: bool = True,
    seed: int = 0,
    projection_dim: int = 512,
    tokenizer: Any = None,
) -> Path:
    """Save a random ``ClapModel`` + ``ClapProcessor`` to ``out_dir`` (small or full size).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` to ship instead of the tiny BPE (benches pass
    RoBERTa's, ``roberta_bpe``, so that sentences split into real token counts).
    """
    import torch
    from transformers import ClapConfig, ClapModel, ClapProcessor

    tok = hf_tokenizer(backend=tokenizer)
    torch.manual_seed(seed)
    if small:
        text = {**SMALL_TEXT, "vocab_size": tok.backend_tokenizer.get_vocab_size()}
        cfg = ClapConfig(text_config=text, audio_config=SMALL_AUDIO, projection_dim=projection_dim)
    else:
        cfg = ClapConfig()  # the clap-htsat-unfused architecture
    out = Path(out_dir)
    ClapModel(cfg).eval().save_pretrained(out)
    ClapProcessor(feature_extractor=hf_feature_extractor(), tokenizer=tok).save_pretrained(out)
    return out
