"""Parity with transformers: a small random ``ClapModel`` exported by our exporter.

Our pipeline (PCM → decode → 48 kHz → windows → numpy mel → ONNX) against ``ClapFeatureExtractor``
+ ``get_audio_features`` on the same windows, and ``get_text_features`` on the same tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from insight.config import ModelSettings  # noqa: E402
from insight.inference.audio import (  # noqa: E402
    MelConfig,
    MelExtractor,
    decode_pcm,
    resample,
    split_windows,
)
from insight.inference.clap import ClapModel, session_options  # noqa: E402
from insight.inference.export import ExportError, export_clap, quantize_int8  # noqa: E402
from insight.inference.model import embed_audio  # noqa: E402
from insight.inference.text import format_track_text  # noqa: E402
from insight.testing.hf_clap import build_hf_clap  # noqa: E402


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("parity")
    src = build_hf_clap(root / "hf", small=True, seed=0)
    out = export_clap(src, root / "onnx", quantize="int8")
    return src, out


@pytest.fixture(scope="session")
def hf(exported: tuple[Path, Path]) -> tuple[Any, Any]:
    src, _ = exported
    model = transformers.ClapModel.from_pretrained(src).eval()
    processor = transformers.ClapProcessor.from_pretrained(src)
    return model, processor


@pytest.fixture(scope="session")
def ours(exported: tuple[Path, Path]) -> ClapModel:
    return ClapModel.load(exported[1], ModelSettings(threads=2, quantized=False), "parity")


def _norm(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _music(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """A few tones with an envelope and noise, [samples, channels] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(
        0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * (1 + np.sin(2 * np.pi * 0.3 * k * t))
        for k, f in enumerate(rng.uniform(80, 4000, 4))
    )
    x = x[:, None] + 0.03 * rng.standard_normal((t.size, channels))
    return np.clip(x, -1, 1)


CASES = {
    "10s_48k_mono_f32": (10.0, 48_000, 1, "pcm_f32_le"),
    "3s_48k_stereo_s24": (3.0, 48_000, 2, "pcm_s24_le"),
    "25s_48k_mono_s16": (25.0, 48_000, 1, "pcm_s16_le"),
    "12s_44k1_stereo_s16": (12.0, 44_100, 2, "pcm_s16_le"),
}


def _pcm(x: np.ndarray, fmt: str) -> bytes:
    if fmt == "pcm_f32_le":
        return x.astype("<f4").tobytes()
    if fmt == "pcm_s16_le":
        return (x * 32767).astype("<i2").tobytes()
    v = (x * 8_388_607).astype(np.int32).reshape(-1)
    return b"".join(int(s).to_bytes(3, "little", signed=True) for s in v)


@pytest.mark.parametrize("case", list(CASES))
def test_audio_window_vectors_match_transformers(
    case: str, ours: ClapModel, hf: tuple[Any, Any]
) -> None:
    seconds, sr, channels, fmt = CASES[case]
    model, processor = hf
    mono = resample(
        decode_pcm(_pcm(_music(seconds, sr, channels, 1), fmt), fmt, channels), sr, 48_000
    )
    windows = split_windows(mono, 480_000, 480_000)
    expected_windows = max(1, int(np.ceil(len(mono) / 480_000)))
    assert windows.shape[0] == expected_windows

    # HF gets the raw cut (short clips and tails unpadded: its repeatpad must equal ours).
    n_full = len(mono) // 480_000
    raw = [mono[i * 480_000 : (i + 1) * 480_000] for i in range(n_full)]
    if len(mono) % 480_000:
        raw.append(mono[n_full * 480_000 :])
    feats = processor.feature_extractor(raw, sampling_rate=48_000, return_tensors="np")
    ref_feats = feats["input_features"]
    our_feats = MelExtractor(MelConfig.from_model_dir(ours.model_dir))(windows)
    assert our_feats.shape == ref_feats.shape
    assert float(np.max(np.abs(our_feats - ref_feats))) <= 1e-3

    with torch.no_grad():
        out = model.get_audio_features(input_features=torch.from_numpy(ref_feats))
    ref = _norm(out.pooler_output.numpy())
    got = ours.embed_windows(windows)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.9999, cos

    track, n = embed_audio(ours, mono, 10.0, 10.0)
    assert n == expected_windows
    assert float(track @ _norm(ref.mean(axis=0))) >= 0.9999


TEXTS = [
    format_track_text("Bohemian Rhapsody", ["Queen"], "A Night at the Opera", ["Rock"]),
    format_track_text("Track", [], None, []),
    format_track_text("Under Pressure", ["Queen", "David Bowie"], "", ["Rock", "Pop"]),
    format_track_text("Jóga", ["Björk"], "Homogenic", ["Electronic", "Art Pop"]),
    format_track_text("Hoppípolla", ["Sigur Rós"], "Takk...", []),
    format_track_text("戦場のメリークリスマス", ["坂本龍一"], None, ["Ambient"]),
    format_track_text("Ace of Spades", ["Motörhead"], "Ace of Spades", ["Metal"]),
    format_track_text("Город", ["Аквариум"], None, ["Rock"]),
    format_track_text("🎵 emoji 🎶", ["DJ ♫"], "✨", ["K-Pop"]),
    format_track_text("Long " * 60, ["Artist"] * 10, "Album " * 20, ["Genre"] * 30),
    "calm piano music for a rainy day",
    "upbeat workout mix",
    "",
    " ",
    "a",
    "late night jazz club with saxophone and double bass",
    "AGGRESSIVE DRUM AND BASS",
    "songs like 'Kind of Blue' by Miles Davis",
    "music\twith\ttabs\nand newlines",
    "rock " * 200,
]


def test_text_vectors_match_transformers(ours: ClapModel, hf: tuple[Any, Any]) -> None:
    assert len(TEXTS) == 20
    model, processor = hf
    enc = processor.tokenizer(
        TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        ref = _norm(model.get_text_features(**enc).pooler_output.numpy())
    got = ours.embed_text(TEXTS)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.9999, cos
    # our tokenizer gives HF's ids (dynamic padding aside)
    ids, mask = ours.tokenizer.encode_batch(TEXTS)
    np.testing.assert_array_equal(ids, enc["input_ids"].numpy()[:, : ids.shape[1]])
    np.testing.assert_array_equal(mask, enc["attention_mask"].numpy()[:, : ids.shape[1]])


def _fused_ops(path: Path, out: Path, **kwargs: Any) -> set[str]:
    """Op types of ``path`` after ONNX Runtime's optimisations (its own dump of them)."""
    import onnx
    import onnxruntime as ort

    opts = session_options(None)
    opts.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], **kwargs)
    return {n.op_type for n in onnx.load(str(out)).graph.node}


def test_text_session_runs_without_skip_layer_norm_fusion(
    exported: tuple[Path, Path], ours: ClapModel, tmp_path: Path
) -> None:
    """The text tower's session refuses the SkipLayerNormalization fusion (slower on CPU at
    batch 32: BENCHMARKS.md, Session 6) and gives the default session's vectors."""
    import onnxruntime as ort

    from insight.inference.ort_options import text_session_kwargs

    text = exported[1] / "text_model.onnx"
    assert "SkipLayerNormalization" in _fused_ops(text, tmp_path / "default.onnx")
    ops = _fused_ops(text, tmp_path / "text.onnx", **text_session_kwargs())
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    assert ours.towers.text == text
    assert ours._text._extra == text_session_kwargs()  # the service's text session uses them
    plain = ort.InferenceSession(
        str(text), session_options(None), providers=["CPUExecutionProvider"]
    )
    ids, mask = ours.tokenizer.encode_batch(TEXTS)  # one batch, as embed_text runs them
    (ref,) = plain.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(ours.embed_text(TEXTS), _norm(ref), atol=1e-5)


def test_export_layout_and_int8(exported: tuple[Path, Path], ours: ClapModel) -> None:
    _, out = exported
    for name in (
        "text_model.onnx",
        "audio_model.onnx",
        "text_model_quantized.onnx",
        "audio_model_quantized.onnx",
        "tokenizer.json",
        "preprocessor_config.json",
        "config.json",
        "export.json",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]
    report = json.loads((out / "export.json").read_text())
    assert report["text_min_cosine"] >= 0.9999 and report["audio_min_cosine"] >= 0.9999
    # the text tower's last layer runs on token 0 alone (checked against the plain export);
    # its vectors still match transformers (test_text_vectors_match_transformers)
    assert report["text_rewritten"] is True and report["text_last_token"]["reshapes"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["projection_dim"] == 512 and cfg["pad_token_id"] == 1
    assert MelConfig.from_model_dir(out) == MelConfig()
    assert ours.tokenizer.pad_id == 1 and ours.tokenizer.max_length == 77

    q = ClapModel.load(out, ModelSettings(threads=2, quantized=True))
    assert q.quantized
    texts = TEXTS[:8]
    assert float(np.min(np.sum(q.embed_text(texts) * ours.embed_text(texts), axis=1))) >= 0.99
    w = resample(_music(10.0, 48_000, 1, 5)[:, 0].astype(np.float32), 48_000, 48_000)[None, :]
    assert float(q.embed_windows(w)[0] @ ours.embed_windows(w)[0]) >= 0.99


def test_export_rejects_unknown_quantization(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="int8"):
        export_clap("unused", tmp_path, quantize="int4")


def test_runtime_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import insight.inference.clap, insight.inference.pool, "
        "insight.inference.audio, insight.inference.text, insight.inference.export, "
        "insight.testing.tiny_clap; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_graph_has_no_resize_or_zero_pads(exported: tuple[Path, Path]) -> None:
    """The bicubic stretch is a 4-tap gather, no-op pads are gone, and cyclic shifts, window
    partitions and patch merges are gathers and transposes, not slices (see export_patches)."""
    import onnx

    _, out = exported
    for name in ("audio_model.onnx", "audio_model_quantized.onnx"):
        ops = {n.op_type for n in onnx.load(str(out / name), load_external_data=False).graph.node}
        assert not ops & {"Resize", "Pad", "TopK", "Erf", "Split", "Slice"}, (name, ops)
        assert {"Gelu", "Gather"} <= ops
    assert json.loads((out / "export.json").read_text())["exporter_version"] >= 3


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [(1024, 64), (1024, 80), (900, 64)])
def test_bicubic_gather_equals_interpolate(align_corners: bool, size: tuple[int, int]) -> None:
    from insight.inference.export_patches import export_friendly

    f = torch.nn.functional
    x = torch.randn(2, 1, 1001, 64, generator=torch.Generator().manual_seed(0)) * 20 - 40
    ref = f.interpolate(x, size, mode="bicubic", align_corners=align_corners)
    with export_friendly():
        got = f.interpolate(x, size, mode="bicubic", align_corners=align_corners)
        assert f.pad(x, (0, 0, 0, 0)) is x
        assert f.pad(x, (0, 1)).shape[-1] == 65
        nearest = f.interpolate(x, size, mode="nearest")
    assert got.shape == ref.shape == (2, 1, *size)
    assert float((got - ref).abs().max()) <= 1e-6 * float(ref.abs().max())  # float rounding
    assert torch.equal(nearest, f.interpolate(x, size, mode="nearest"))
    assert f.interpolate is not None and f.pad(x, (0, 0)) is not x  # patches undone


def test_int8_quantization_ignores_stale_shape_hints(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    """A stale shape hint in the graph (seen with torch 2.11's exporter) must not stop int8."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(exported[1] / "text_model.onnx"))
    # torch 2.11 recorded a shape for a weight that is not the weight's own shape
    weight = next(w for w in model.graph.initializer if len(w.dims) == 1 and w.dims[0] > 1)
    model.graph.value_info.append(
        onnx.helper.make_tensor_value_info(weight.name, weight.data_type, [weight.dims[0] + 1])
    )
    stale = tmp_path / "stale.onnx"
    onnx.save(model, str(stale))
    with pytest.raises(onnx.shape_inference.InferenceError, match="differ in dimension 0"):
        quantize_dynamic(stale, tmp_path / "plain.onnx", weight_type=QuantType.QInt8)

    quantize_int8(stale, tmp_path / "q.onnx")
    ids = np.array([[0, 100, 200, 300, 2]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    fp32, int8 = (
        ort.InferenceSession(str(path), session_options(None)).run(None, feed)[0]
        for path in (exported[1] / "text_model.onnx", tmp_path / "q.onnx")
    )
    assert float((_norm(fp32) * _norm(int8)).sum()) >= 0.99


def test_swin_rewrites_equal_transformers(exported: tuple[Path, Path]) -> None:
    """Window gathers and patch-merge transpose give the original's values, shifts included."""
    from transformers.models.clap import modeling_clap

    from insight.inference.export_patches import export_friendly, window_order

    model = transformers.ClapModel.from_pretrained(exported[0]).eval()
    shifted = [m.shift_size for m in model.modules() if isinstance(m, modeling_clap.ClapAudioLayer)]
    assert sum(s > 0 for s in shifted) >= 2, shifted  # the small model exercises the cyclic shift
    mel = torch.randn(2, 1, 1001, 64, generator=torch.Generator().manual_seed(0)) * 8 - 40
    with torch.no_grad():
        ref = model.get_audio_features(input_features=mel).pooler_output
        with export_friendly():
            got = model.get_audio_features(input_features=mel).pooler_output
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())

    order, inverse = window_order(16, 16, 8, 4)
    assert sorted(order.tolist()) == list(range(256))
    assert torch.equal(order[inverse], torch.arange(256))
    grid = torch.arange(256).view(1, 16, 16, 1)
    partitioned = modeling_clap.window_partition(torch.roll(grid, (-4, -4), (1, 2)), 8)
    assert torch.equal(order, partitioned.reshape(-1))
