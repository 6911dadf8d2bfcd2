"""ClapModel on the tiny ONNX model: layouts, providers, lazy sessions, vectors."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from insight.config import ModelSettings
from insight.errors import BadRequest, NotReady
from insight.inference.clap import ClapModel, select_providers
from insight.inference.model import embed_audio
from insight.testing import build_tiny_clap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(tiny: Path) -> ClapModel:
    return ClapModel.load(tiny, ModelSettings(threads=1), "tiny")


def _tone(seconds: float, f: float, seed: int = 0, sr: int = 48_000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * noise).astype(np.float32)


def test_build_is_deterministic_and_fast(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    a = build_tiny_clap(tmp_path / "a", seed=3)
    assert time.perf_counter() - t0 < 2.0
    b = build_tiny_clap(tmp_path / "b", seed=3)
    for name in ("text_model.onnx", "audio_model.onnx", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    text = onnx.load(str(a / "text_model.onnx"))
    assert [i.name for i in text.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in text.graph.output] == ["text_embeds"]
    audio = onnx.load(str(a / "audio_model.onnx"))
    assert [i.name for i in audio.graph.input] == ["input_features"]


def test_text_vectors(model: ClapModel) -> None:
    texts = ["Queen - Bohemian Rhapsody", "calm piano", "heavy metal", "calm piano", ""]
    v = model.embed_text(texts)
    assert v.shape == (5, 512) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v[1], v[3])
    assert float(v[0] @ v[1]) < 0.99 and float(v[1] @ v[2]) < 0.99
    # batched (with padding) equals one at a time
    single = np.stack([model.embed_text([t])[0] for t in texts])
    np.testing.assert_allclose(v, single, atol=1e-5)
    assert model.embed_text([]).shape == (0, 512)
    many = model.embed_text([f"song number {i}" for i in range(70)])  # > one internal batch
    np.testing.assert_allclose(many[65], model.embed_text(["song number 65"])[0], atol=1e-5)


def test_similar_audio_similar_vectors(model: ClapModel) -> None:
    a = model.embed_windows(np.stack([_tone(10, 440, 0), _tone(10, 440, 1), _tone(10, 4000, 2)]))
    assert a.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    same, different = float(a[0] @ a[1]), float(a[0] @ a[2])
    assert same > 0.99
    assert different < same - 0.01


def test_embed_audio_windows_and_track_vector(model: ClapModel) -> None:
    x = np.concatenate([_tone(10, 440), _tone(10, 2000), _tone(5, 440)])
    vec, n = embed_audio(model, x, 10.0, 10.0)
    assert n == 3
    windows = model.embed_windows(
        np.stack([x[:480_000], x[480_000:960_000], np.tile(x[960_000:], 2)])
    )
    np.testing.assert_allclose(vec, ClapModel.track_vector(windows), atol=1e-6)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    _, n5 = embed_audio(model, x, 5.0, 5.0)
    assert n5 == 5
    with pytest.raises(BadRequest):
        embed_audio(model, np.zeros(0, np.float32), 10.0, 10.0)


def test_embed_features_matches_windows(model: ClapModel) -> None:
    x = np.stack([_tone(10, 300)])
    np.testing.assert_allclose(
        model.embed_windows(x), model.embed_features(model.mel(x)), atol=1e-6
    )


def test_xenova_layout_and_quantized_preference(tiny: Path, tmp_path: Path) -> None:
    root = tmp_path / "xenova"
    (root / "onnx").mkdir(parents=True)
    for name in ("text_model.onnx", "audio_model.onnx"):
        shutil.copy(tiny / name, root / "onnx" / name)
    shutil.copy(tiny / "tokenizer.json", root / "tokenizer.json")
    m = ClapModel.load(root, ModelSettings(), "xenova")
    assert m.files.text_model == root / "onnx" / "text_model.onnx"
    assert m.mel_config.f_min == 50.0  # defaults without preprocessor_config.json
    assert m.embed_text(["rock"]).shape == (1, 512)
    # a quantized file is used only when asked for
    shutil.copy(tiny / "text_model.onnx", root / "onnx" / "text_model_quantized.onnx")
    q = ClapModel.load(root, ModelSettings(quantized=True))
    assert q.files.text_model.name == "text_model_quantized.onnx"
    assert q.files.audio_model.name == "audio_model.onnx"
    assert ClapModel.load(root, ModelSettings()).files.text_model.name == "text_model.onnx"


@pytest.mark.parametrize("missing", ["text_model.onnx", "audio_model.onnx", "tokenizer.json"])
def test_missing_file_is_not_ready(tiny: Path, tmp_path: Path, missing: str) -> None:
    shutil.copytree(tiny, tmp_path / "m")
    (tmp_path / "m" / missing).unlink()
    with pytest.raises(NotReady, match=missing.replace(".", r"\.")):
        ClapModel.load(tmp_path / "m", ModelSettings())
    with pytest.raises(NotReady, match="does not exist"):
        ClapModel.load(tmp_path / "nope", ModelSettings())


def test_output_dim_is_checked(tmp_path: Path) -> None:
    root = build_tiny_clap(tmp_path / "m", dim=256)
    cfg = json.loads((root / "config.json").read_text())
    cfg["projection_dim"] = 512
    (root / "config.json").write_text(json.dumps(cfg))
    m = ClapModel.load(root, ModelSettings())
    with pytest.raises(NotReady, match="expected"):
        m.embed_text(["rock"])
    ok = ClapModel.load(build_tiny_clap(tmp_path / "ok", dim=256), ModelSettings())
    assert ok.dim == 256 and ok.embed_text(["rock"]).shape == (1, 256)


def test_corrupt_model_is_not_ready(tiny: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny, tmp_path / "m")
    (tmp_path / "m" / "audio_model.onnx").write_bytes(b"not an onnx file")
    m = ClapModel.load(tmp_path / "m", ModelSettings())
    with pytest.raises(NotReady, match=r"cannot load audio_model\.onnx"):
        m.embed_windows(np.zeros((1, 48_000), np.float32))


def test_provider_fallback_warns_once(caplog: pytest.LogCaptureFixture, tiny: Path) -> None:
    settings = ModelSettings(enable_cuda=True, enable_openvino=True)
    with caplog.at_level(logging.WARNING, logger="insight.inference.clap"):
        m = ClapModel.load(tiny, settings)
        m.embed_text(["rock"])
    warnings = [r for r in caplog.records if "execution_provider_unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "CUDA,OpenVINO" in warnings[0].getMessage() and "using=CPU" in warnings[0].getMessage()
    assert m.device == "CPU" and m.providers == ["CPUExecutionProvider"]
    providers, device = select_providers(ModelSettings())
    assert (providers, device) == (["CPUExecutionProvider"], "CPU")


def test_sessions_created_once_across_threads(tiny: Path) -> None:
    m = ClapModel.load(tiny, ModelSettings(threads=1))
    assert not m.loaded
    sessions = []

    def work() -> None:
        m.embed_text(["rock"])
        sessions.append(m._text.get())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sessions) == 8 and all(s is sessions[0] for s in sessions)
    m.warmup()
    assert m.loaded


def test_streamed_chunks_give_the_one_call_vector(model: ClapModel) -> None:
    from insight.inference.audio import StreamResampler, decode_pcm, resample

    sr = 44_100
    t = np.arange(int(23.7 * sr)) / sr
    rng = np.random.default_rng(7)
    stereo = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] * (1 + np.sin(2 * np.pi * 0.2 * t))[:, None]
    stereo = stereo + 0.05 * rng.standard_normal((t.size, 2))
    data = (np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes()

    one, n_one = embed_audio(
        model, resample(decode_pcm(data, "pcm_s16_le", 2), sr, 48_000), 10.0, 10.0
    )

    rs = StreamResampler(sr, 48_000)
    parts, pos, frame = [], 0, 4
    while pos < len(data):
        n = int(rng.integers(1, 30_000)) * frame
        chunk = data[pos : pos + n]
        pos += n
        parts.append(rs.process(decode_pcm(chunk, "pcm_s16_le", 2), last=pos >= len(data)))
    streamed, n_streamed = embed_audio(model, np.concatenate(parts), 10.0, 10.0)
    assert n_one == n_streamed == 3
    assert float(one @ streamed) >= 0.99999


def test_sessions_share_one_thread_pool(tiny: Path) -> None:
    """In a fresh process: the first model sizes the shared ORT pool, a later one asking for
    another size is told so (a tool asking for none is not), and both give the same vectors
    (a session with its own pool would be refused by ONNX Runtime once the shared pool exists)."""
    import subprocess
    import sys

    code = f"""
import logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from insight.config import ModelSettings
from insight.inference.clap import ClapModel, session_options
a = ClapModel.load({str(tiny)!r}, ModelSettings(threads=1))
b = ClapModel.load({str(tiny)!r}, ModelSettings(threads=2))
session_options(None)  # a tool's session takes the pool as it is, silently
x = np.sin(np.arange(96_000, dtype=np.float32) / 10)[None, :]
assert np.allclose(a.embed_windows(x), b.embed_windows(x), atol=1e-6)
assert np.allclose(a.embed_text(["calm piano"]), b.embed_text(["calm piano"]), atol=1e-6)
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "onnx_threads_fixed asked=2 using=1" in out and out.strip().endswith("ok")
    assert out.count("onnx_threads_fixed") == 1


def test_audio_batch_is_chosen_per_device_and_does_not_change_vectors(tiny: Path) -> None:
    from insight.inference.clap import auto_audio_batch

    assert ClapModel.load(tiny, ModelSettings(threads=1)).audio_batch == 8  # CPU fp32
    assert (auto_audio_batch("CPU", True), auto_audio_batch("CUDA", False)) == (1, 32)
    one = ClapModel.load(tiny, ModelSettings(threads=1, audio_batch=1))
    three = ClapModel.load(tiny, ModelSettings(threads=1, audio_batch=3))
    assert (one.audio_batch, three.audio_batch) == (1, 3)
    windows = np.stack([_tone(10.0, f, seed=i) for i, f in enumerate((110, 220, 440, 880, 1760))])
    np.testing.assert_allclose(one.embed_windows(windows), three.embed_windows(windows), atol=1e-5)
    with pytest.raises(ValueError, match="audio_batch"):
        ModelSettings(audio_batch=-1)
