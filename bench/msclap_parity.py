"""Microsoft CLAP 2023 at full size (random weights): export, parity with msclap, speed.

Builds msclap's ``CLAP`` as config_2023.yml describes it (GPT-2 of 12 layers x 768, HTSAT of
msclap's models/config.py, 1024-d projections), exports it with ``export_msclap`` (fp32 and
int8), and compares our pipeline with msclap's own preprocessing + PyTorch encoders on the
same texts and 7 s clips: min cosine, and the time of one window / one text. ``--small`` runs
the test suite's size instead. Not a test (the suite runs the small size in tests/test_msclap.py).

    .venv/bin/python bench/msclap_parity.py [--small] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insight.config import ModelSettings
from insight.inference.export_msclap import export_msclap
from insight.inference.families import load_model
from insight.testing.ms_clap import (
    build_gpt2_tokenizer,
    build_msclap,
    hf_gpt2_tokenizer,
    wrapper_class,
)

SR = 44_100
TEXTS = ["Queen - Bohemian Rhapsody. Album: A Night at the Opera", "calm piano", "loud drums"]


def clip(seed: int, seconds: float = 7.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 110 * (seed + 1) * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def wrapper(model: Any, tok_json: Path) -> Any:
    cls = wrapper_class()
    w = cls.__new__(cls)
    yml = Path(sys.modules["msclap"].__path__[0]) / "configs" / "config_2023.yml"
    w.args = w.read_config_as_args(yml.read_text(), is_config_str=True)
    w.np_str_obj_array_pattern = re.compile(r"[SaUO]")
    w.default_collate_err_msg_format = "default_collate: {}"
    w.use_cuda, w.token_keys = False, ["input_ids", "attention_mask"]
    w.tokenizer, w.clap = hf_gpt2_tokenizer(tok_json), model
    return w


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=None)
    args = ap.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="msclap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    tok = build_gpt2_tokenizer()
    tok.save(str(work / "tokenizer.json"))
    t0 = time.perf_counter()
    model = build_msclap(small=args.small, vocab_size=tok.get_vocab_size())
    build_s = time.perf_counter() - t0
    export_msclap(model, work / "tokenizer.json", work / "onnx", quantize="int8")
    export_s = time.perf_counter() - t0 - build_s
    w = wrapper(model, work / "tokenizer.json")
    clips = {f"c{i}": clip(i) for i in range(4)}
    w.read_audio = lambda path, resample=True: (torch.from_numpy(clips[path])[None], SR)
    with torch.no_grad():
        t1 = time.perf_counter()
        ref_audio = w._get_audio_embeddings(w.preprocess_audio(list(clips), False)).numpy()
        torch_audio_s = (time.perf_counter() - t1) / len(clips)
        ref_text = w.get_text_embeddings(TEXTS).numpy()
    out: dict[str, Any] = {
        "bench": "msclap_parity",
        "size": "small" if args.small else "full",
        "build_s": round(build_s, 1),
        "export_s": round(export_s, 1),
        "torch_ms_per_window": round(1000 * torch_audio_s, 1),
    }
    for quantized in (False, True):
        ours = load_model(work / "onnx", ModelSettings(threads=2, quantized=quantized), "bench")
        spec = ours.audio_spec(7.0, 7.0)
        windows = np.concatenate([ours.split_windows(c, spec) for c in clips.values()])
        ours.embed_windows(windows[:1])  # sessions made before timing
        t1 = time.perf_counter()
        audio = ours.embed_windows(windows)
        ms = 1000 * (time.perf_counter() - t1) / len(windows)
        text = ours.embed_text(TEXTS)

        def cos(a: np.ndarray, b: np.ndarray) -> float:
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
            return float(np.sum(a * b, axis=1).min())

        key = "int8" if quantized else "fp32"
        out[key] = {
            "audio_min_cosine": round(cos(ref_audio, audio), 7),
            "text_min_cosine": round(cos(ref_text, text), 7),
            "ms_per_window": round(ms, 1),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
