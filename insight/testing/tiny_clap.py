"""A tiny CLAP-shaped model folder, built with the ``onnx`` helper API (no torch).

Same file names, tensor names and shapes as a real export, so the whole service runs on it:

- ``text_model.onnx``: ``input_ids``, ``attention_mask`` int64 ``[B, T]`` → ``text_embeds``
  ``[B, dim]`` (embedding lookup → masked mean → linear; not normalised);
- ``audio_model.onnx``: ``input_features`` ``[B, 1, F, 64]`` → ``audio_embeds`` ``[B, dim]``
  (per-mel-bin mean and std over time → tanh layer → linear), so similar audio gives similar
  vectors;
- ``tokenizer.json`` (byte-level BPE trained on a built-in corpus, RoBERTa special tokens),
  ``preprocessor_config.json`` (unfused CLAP values) and ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as RoBERTa
PAD_ID = 1
MAX_TEXT_LENGTH = 77
OPSET = 17
IR_VERSION = 8

PREPROCESSOR_CONFIG: dict[str, Any] = {
    "feature_extractor_type": "ClapFeatureExtractor",
    "sampling_rate": 48000,
    "fft_window_size": 1024,
    "hop_length": 480,
    "feature_size": 64,
    "frequency_min": 50,
    "frequency_max": 14000,
    "max_length_s": 10,
    "nb_max_samples": 480000,
    "padding": "repeatpad",
    "truncation": "rand_trunc",
    "padding_value": 0.0,
    "padding_side": "right",
    "return_attention_mask": False,
    "top_db": None,
}

_CORPUS = (
    "rock pop jazz blues metal punk funk soul disco techno house trance ambient classical folk",
    "country reggae hip hop rap electronic indie alternative grunge gospel opera symphony piano",
    "guitar bass drums violin cello trumpet saxophone synthesizer vocals choir orchestra band",
    "happy sad energetic calm relaxing aggressive dark bright melancholic uplifting romantic epic",
    "dreamy chill groovy upbeat slow fast loud quiet acoustic live remix remaster edition deluxe",
    "love night dance heart fire rain summer winter city road dream light shadow river ocean",
    "Queen Bohemian Rhapsody A Night at the Opera Under Pressure Hot Space David Bowie Beatles",
    "Abbey Road Pink Floyd The Wall Miles Davis Kind of Blue Daft Punk Random Access Memories",
    "Unknown Artist Album Genres Progressive Rock Track Song Live at the Apollo Greatest Hits",
    "music for a rainy day, songs to focus, upbeat workout mix, late night jazz club, road trip",
    "Motörhead Sigur Rós Björk Beyoncé Café del Mar 坂本龍一 Аквариум東京 ünïcödé ♪ ♫ 🎵",
)


def build_tiny_tokenizer(vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE with RoBERTa's special tokens and ``<s> … </s>`` post-processing."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS), trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def _text_model(
    vocab: int, dim: int, rng: np.random.Generator, hidden: int = 64
) -> onnx.ModelProto:
    f32 = np.float32
    inits = [
        _init("emb", rng.standard_normal((vocab, hidden)).astype(f32)),
        _init("w", (rng.standard_normal((hidden, dim)) / np.sqrt(hidden)).astype(f32)),
        _init("b", (0.01 * rng.standard_normal(dim)).astype(f32)),
        _init("axis1", np.array([1], dtype=np.int64)),
        _init("one", np.array(1.0, dtype=f32)),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),  # [B,T,H]
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),  # [B,T,1]
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),  # [B,H]
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # [B,1]
        helper.make_node("Max", ["count", "one"], ["count1"]),
        helper.make_node("Div", ["summed", "count1"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w"], ["proj"]),
        helper.make_node("Add", ["proj", "b"], ["text_embeds"]),
    ]
    inits.append(_init("axis2", np.array([2], dtype=np.int64)))
    graph = helper.make_graph(
        nodes,
        "tiny_clap_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    return _model(graph)


def _audio_model(
    n_mels: int, dim: int, rng: np.random.Generator, hidden: int = 256
) -> onnx.ModelProto:
    f32 = np.float32
    inits = [
        _init("center", np.array(-50.0, dtype=f32)),
        _init("scale", np.array(1.0 / 20.0, dtype=f32)),
        _init("flat", np.array([0, 2 * n_mels], dtype=np.int64)),
        _init("w1", (rng.standard_normal((2 * n_mels, hidden)) / np.sqrt(2 * n_mels)).astype(f32)),
        _init("b1", (0.1 * rng.standard_normal(hidden)).astype(f32)),
        _init("w2", (rng.standard_normal((hidden, dim)) / np.sqrt(hidden)).astype(f32)),
        _init("b2", (0.01 * rng.standard_normal(dim)).astype(f32)),
    ]
    nodes = [
        helper.make_node("Sub", ["input_features", "center"], ["xc"]),
        helper.make_node("Mul", ["xc", "scale"], ["xs"]),  # [B,1,F,M]
        helper.make_node("ReduceMean", ["xs"], ["mean"], axes=[2], keepdims=1),  # [B,1,1,M]
        helper.make_node("Sub", ["xs", "mean"], ["dev"]),
        helper.make_node("Mul", ["dev", "dev"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[2], keepdims=1),
        helper.make_node("Sqrt", ["var"], ["std"]),
        helper.make_node("Concat", ["mean", "std"], ["stats"], axis=3),  # [B,1,1,2M]
        helper.make_node("Reshape", ["stats", "flat"], ["s"]),  # [B,2M]
        helper.make_node("MatMul", ["s", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["audio_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clap_audio",
        [
            helper.make_tensor_value_info(
                "input_features", TensorProto.FLOAT, ["batch", 1, "frames", n_mels]
            )
        ],
        [helper.make_tensor_value_info("audio_embeds", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="insight.testing"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_tiny_clap(out_dir: Path, dim: int = 512, seed: int = 0) -> Path:
    """Write the tiny model folder to ``out_dir`` and return it (deterministic for a seed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tok = build_tiny_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    n_mels = int(PREPROCESSOR_CONFIG["feature_size"])
    onnx.save(_text_model(tok.get_vocab_size(), dim, rng), str(out / "text_model.onnx"))
    onnx.save(_audio_model(n_mels, dim, rng), str(out / "audio_model.onnx"))
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    config = {
        "model_type": "clap",
        "architectures": ["InsightTinyClap"],
        "projection_dim": dim,
        "max_text_length": MAX_TEXT_LENGTH,
        "pad_token_id": PAD_ID,
        "text_config": {"pad_token_id": PAD_ID, "vocab_size": tok.get_vocab_size()},
        "audio_config": {"num_mel_bins": n_mels, "enable_fusion": False},
        "insight": {"tiny": True, "seed": seed},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
