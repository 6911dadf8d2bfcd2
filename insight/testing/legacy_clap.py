"""A hub-layout CLAP folder made the way the hub's ONNX files are (tests and benches only).

Xenova's ``clap-htsat-unfused`` files come from optimum, which uses the legacy TorchScript
exporter (``torch.onnx.export(dynamo=False)``): that graph has none of our export's rewrites.
This builds the same kind of graph from a transformers folder (``hf_clap.build_hf_clap``), in
the hub's layout (``onnx/{text,audio}_model.onnx``), so the load-time rewrite has something
real to work on. Imports torch and transformers: never import this from runtime code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 14  # optimum's default for CLAP


def export_legacy(hf_dir: Path, out_dir: Path, opset: int = OPSET, text: bool = True) -> Path:
    """``out_dir`` in the Xenova layout, the towers exported with ``dynamo=False`` (the text
    one only with ``text``: the full-size one takes most of the time)."""
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(str(hf_dir)).eval()
    processor = ClapProcessor.from_pretrained(str(hf_dir))
    out = Path(out_dir)
    (out / "onnx").mkdir(parents=True, exist_ok=True)

    def features(o: Any) -> Any:
        return o if hasattr(o, "shape") else o.pooler_output

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return features(
                self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            )

    class Audio(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_features: Any) -> Any:
            return features(self.m.get_audio_features(input_features=input_features))

    ids = torch.tensor([[0, 10, 11, 12, 2], [0, 13, 2, 1, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    cfg = model.config.audio_config
    frames = 1001  # 10 s at hop 480, as the feature extractor makes them
    feats = torch.randn(1, 1, frames, int(cfg.num_mel_bins))
    with torch.no_grad():
        if text:
            _export_text(torch, Text().eval(), ids, mask, out, opset)
        torch.onnx.export(
            Audio().eval(),
            (feats,),
            str(out / "onnx" / "audio_model.onnx"),
            input_names=["input_features"],
            output_names=["audio_embeds"],
            dynamic_axes={"input_features": {0: "batch_size"}, "audio_embeds": {0: "batch_size"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    processor.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    fe = {
        k: v
        for k, v in processor.feature_extractor.to_dict().items()
        if not isinstance(v, np.ndarray)
    }
    (out / "preprocessor_config.json").write_text(json.dumps(fe, indent=2, default=str))
    config = json.loads(model.config.to_json_string())
    config["projection_dim"] = int(model.config.projection_dim)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def _export_text(torch: Any, tower: Any, ids: Any, mask: Any, out: Path, opset: int) -> None:
    torch.onnx.export(
        tower,
        (ids, mask),
        str(out / "onnx" / "text_model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["text_embeds"],
        dynamic_axes={
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"},
            "text_embeds": {0: "batch_size"},
        },
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def build_legacy_clap(out_dir: Path, small: bool = True, seed: int = 0, text: bool = True) -> Path:
    """A random CLAP (small, or the full clap-htsat-unfused architecture) in the hub layout."""
    from insight.testing.hf_clap import build_hf_clap

    out = Path(out_dir)
    hf = out.parent / (out.name + ".hf")
    build_hf_clap(hf, small=small, seed=seed)
    try:
        return export_legacy(hf, out, text=text)
    finally:
        shutil.rmtree(hf, ignore_errors=True)
