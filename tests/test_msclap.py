"""The second model family end to end: Microsoft CLAP 2023 (msclap) with random weights.

Exported by our exporter, checked against msclap's own PyTorch code and preprocessing
(``CLAPWrapper.preprocess_text`` / ``preprocess_audio`` and its encoders), loaded through the
family registry, served, searched, and switched to and from the default model on one data dir.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from insight.config import ModelSettings
from insight.inference.audio import decode_pcm
from insight.inference.clap import ClapModel
from insight.inference.export_msclap import export_msclap
from insight.inference.families import family_of, load_model
from insight.inference.text import format_track_text
from insight.storage.spaces import space_key
from insight.testing.ms_clap import (
    build_gpt2_tokenizer,
    build_msclap,
    hf_gpt2_tokenizer,
    wrapper_class,
)
from tests.conftest import Running

SR = 44_100
TEXTS = [
    format_track_text("Bohemian Rhapsody", ["Queen"], "A Night at the Opera", ["Rock"]),
    "calm piano",
    "Unknown Artist - Track",
    "Hey! loud drums",  # "!" is GPT-2's id 0: msclap's end-of-text rule counts it out
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    root = tmp_path_factory.mktemp("msclap")
    tok = build_gpt2_tokenizer()
    tok.save(str(root / "tokenizer.json"))
    model = build_msclap(small=True, seed=0, vocab_size=tok.get_vocab_size())
    out = export_msclap(model, root / "tokenizer.json", root / "onnx")
    return model, out


@pytest.fixture(scope="module")
def wrapper(exported: tuple[Any, Path]) -> Any:
    """msclap's CLAPWrapper around our random model (its __init__ only adds the hub download)."""
    model, out = exported
    cls = wrapper_class()
    w = cls.__new__(cls)
    yml = (Path(sys.modules["msclap"].__path__[0]) / "configs" / "config_2023.yml").read_text()
    w.args = w.read_config_as_args(yml, is_config_str=True)
    w.np_str_obj_array_pattern = re.compile(r"[SaUO]")
    w.default_collate_err_msg_format = "default_collate: {}"
    w.use_cuda = False
    w.token_keys = ["input_ids", "attention_mask"]
    w.tokenizer = hf_gpt2_tokenizer(out / "tokenizer.json")
    w.clap = model
    return w


@pytest.fixture(scope="module")
def ours(exported: tuple[Any, Path]) -> ClapModel:
    model = load_model(exported[1], ModelSettings(threads=2, quantized=False), "test/msclap")
    assert isinstance(model, ClapModel)
    return model


def _norm(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _music(seconds: float, seed: int) -> np.ndarray:
    """Tones with an envelope and noise as s16 stereo PCM at 44.1 kHz, decoded to mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (110.0 * (seed + 1), 440.0, 1250.0))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)) + 0.03 * rng.standard_normal(t.size)
    stereo = np.stack([x, 0.8 * x], axis=1)
    pcm = (np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes()
    return decode_pcm(pcm, "pcm_s16_le", 2)


def test_msclap_facts_come_from_its_config(wrapper: Any, ours: ClapModel) -> None:
    """1024-d, 44.1 kHz, 7 s windows: msclap's config_2023.yml, read by msclap's own code."""
    args = wrapper.args
    assert (args.d_proj, args.sampling_rate, args.duration) == (1024, 44_100, 7)
    assert args.text_model == "gpt2" and args.audioenc_name == "HTSAT"
    assert ours.family == "msclap-2023" and family_of(ours.model_dir).id == "msclap-2023"
    assert (ours.dim, ours.sample_rate) == (1024, 44_100)
    assert ours.max_window_samples == 7 * 44_100
    from msclap.models import config as htsat_config  # HTSAT's front end, whatever the yml says

    assert ours.mel_config.mel_sampling_rate == htsat_config.sample_rate == 32_000
    assert ours.mel_config.hop_length == htsat_config.hop_size
    assert ours.mel_config.f_max == htsat_config.fmax


def test_text_parity_with_msclap(wrapper: Any, ours: ClapModel) -> None:
    ref = _norm(wrapper.get_text_embeddings(TEXTS).numpy())
    got = ours.embed_text(TEXTS)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.9999, cos


@pytest.mark.parametrize("seconds", [7.0, 3.0])  # a full window; a short clip msclap repeats
def test_audio_parity_with_msclap(wrapper: Any, ours: ClapModel, seconds: float) -> None:
    clips = {f"clip{i}": _music(seconds, i) for i in range(3)}  # not the traced batch of 2
    wrapper.read_audio = lambda path, resample=True: (torch.from_numpy(clips[path])[None], SR)
    batch = wrapper.preprocess_audio(list(clips), False)
    ref = _norm(wrapper._get_audio_embeddings(batch).numpy())
    spec = ours.audio_spec(7.0, 7.0)
    windows = np.concatenate([ours.split_windows(c, spec) for c in clips.values()])
    got = ours.embed_windows(windows)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.9999, cos


def test_serving_msclap_imports_neither_torch_nor_msclap(exported: tuple[Any, Path]) -> None:
    import subprocess

    code = (
        "import sys, numpy as np; from insight.config import ModelSettings; "
        "import insight.inference.export_msclap, insight.storage.spaces, insight.analysers; "
        "from insight.inference.families import load_model; "
        "m = load_model(sys.argv[1], ModelSettings(threads=1), 't'); "
        "assert m.embed_text(['x']).shape == (1, 1024); "
        "assert m.embed_windows(np.zeros((1, 44100), np.float32)).shape == (1, 1024); "
        "bad = [n for n in ('torch', 'transformers', 'msclap', 'torchlibrosa') "
        "if n in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(exported[1])], check=True)


def test_a_window_is_the_same_in_any_batch(ours: ClapModel) -> None:
    """The exported graph keeps every clip to itself whatever the batch (msclap's
    window_reverse, traced as is, fixed the batch to the traced one and mixed clips)."""
    spec = ours.audio_spec(7.0, 7.0)
    windows = np.concatenate([ours.split_windows(_music(7.0, i), spec) for i in range(5)])
    together = ours.embed_windows(windows)
    alone = np.concatenate([ours.embed_windows(w[None]) for w in windows])
    assert np.sum(together * alone, axis=1).min() >= 0.99999


async def test_served_and_switched_on_one_data_dir(
    running: Running, exported: tuple[Any, Path]
) -> None:
    app, api = running.app, running.api
    clap_id = app.require_pool().model.model_id
    status, _ = await api.call(
        "POST", "/tracks/embed-text", {"track_id": "old", "metadata": {"name": "Old Song"}}
    )
    assert status == 200

    await app.load_model(exported[1], "microsoft/msclap-2023")
    status, health = await api.call("GET", "/health")
    assert health["status"] == "healthy"
    status, emb = await api.call("POST", "/embed/text", {"text": "calm piano"})
    assert status == 200 and len(emb["embedding"]) == 1024
    pcm = (np.clip(_music(10.0, 3), -1, 1) * 32767).astype("<i2").tobytes()
    status, audio = await api.call(
        "POST",
        "/embed/audio",
        {"data": pcm, "format": "pcm_s16_le", "sample_rate": SR, "channels": 1},
    )
    assert status == 200 and len(audio["embedding"]) == 1024
    assert audio["windows"] == 2  # 10 s in windows of msclap's 7 s (INSIGHT_AUDIO__WINDOW_SIZE_S)
    for i, name in enumerate(["Calm Piano", "Loud Drums"]):
        status, _ = await api.call(
            "POST", "/tracks/embed-text", {"track_id": f"new{i}", "metadata": {"name": name}}
        )
        assert status == 200
    status, emb = await api.call("POST", "/embed/text", {"metadata": {"name": "Loud Drums"}})
    status, found = await api.call(
        "POST", "/tracks/search", {"embedding": emb["embedding"], "collection": "text"}
    )
    assert status == 200 and [r["track_id"] for r in found["results"]][:1] == ["new1"]
    assert found["results"][0]["score"] > 0.999
    assert "old" not in [r["track_id"] for r in found["results"]]
    status, listed = await api.call("GET", "/storage/spaces")
    spaces = {s["space"]: s for s in listed["spaces"]}
    new_key = space_key("microsoft/msclap-2023", 1024)
    assert set(spaces) == {"default", new_key} and spaces[new_key]["current"]
    assert spaces[new_key]["dim"] == 1024 and spaces["default"]["dim"] == 512
    assert spaces[new_key]["counts"]["tracks_text"] == 2
    assert spaces["default"]["counts"]["tracks_text"] == 1

    await app.load_model(app.configured_model_dir(), clap_id)  # back to the default model
    status, found = await api.call("POST", "/tracks/search-text", {"query": "Old Song"})
    assert status == 200 and [r["track_id"] for r in found["results"]] == ["old"]
    status, emb = await api.call("POST", "/embed/text", {"text": "calm piano"})
    assert len(emb["embedding"]) == 512
