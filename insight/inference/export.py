"""Export a transformers CLAP checkpoint to our ONNX model folder (needs the ``export`` extra).

``torch.onnx.export(dynamo=True)`` with a dynamic batch (and sequence) dimension: the legacy
exporter gives wrong audio outputs for some HTSAT configs, so every export is verified against
torch before anything is written to the destination.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Bumped whenever the exported graphs change (benchmarks re-export older folders).
EXPORTER_VERSION = 5
MIN_COSINE = 0.9999
MIN_COSINE_INT8 = 0.99
MAX_TEXT_LENGTH = 77
VERIFY_TEXTS = [
    "Queen - Bohemian Rhapsody. Album: A Night at the Opera. Genres: Rock, Progressive Rock",
    "calm piano",
    "Unknown Artist - Track",
]


class ExportError(RuntimeError):
    pass


def is_current_export(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds an int8 export made by this exporter version."""
    try:
        report = json.loads((Path(out_dir) / "export.json").read_text())
    except (OSError, ValueError):
        return False
    return report.get("exporter_version") == EXPORTER_VERSION and report.get("quantize") == "int8"


def _require_export_deps() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExportError(
            f"exporting needs torch and transformers ({exc.name} is missing): "
            "pip install 'insight[export]'"
        ) from exc
    return torch, transformers


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=-1)


def _features(out: Any) -> Any:
    """transformers 5 returns an output object (``pooler_output`` is the projection)."""
    return out if hasattr(out, "shape") else out.pooler_output


def _synthetic_audio(sr: int, seconds: float, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    t = np.arange(int(sr * seconds)) / sr
    clips = []
    for i in range(n):
        f = 110.0 * (i + 1)
        x = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
        clips.append((x + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def _ort_run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    from insight.inference.ort_options import session_options

    opts = session_options(None)  # whatever pool the process has: a check, not a service
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return np.asarray(sess.run(None, {k: v for k, v in feed.items() if k in names})[0])


def export_clap(
    source: str | Path,
    out_dir: Path,
    quantize: str | None = None,
    verify: bool = True,
    opset: int = 20,
) -> Path:
    """Convert ``source`` (hub id or local folder) into ``out_dir``; returns ``out_dir``.

    Writes ``text_model.onnx``, ``audio_model.onnx``, ``tokenizer.json``,
    ``preprocessor_config.json``, ``config.json`` and ``export.json`` (what was verified), plus
    ``*_quantized.onnx`` with ``quantize="int8"``.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"unsupported quantization {quantize!r}; use 'int8'")
    torch, transformers = _require_export_deps()
    t0 = time.perf_counter()
    model = transformers.ClapModel.from_pretrained(str(source)).eval()
    processor = transformers.ClapProcessor.from_pretrained(str(source))
    tokenizer, fe = processor.tokenizer, processor.feature_extractor
    if (
        getattr(fe, "truncation", "rand_trunc") == "fusion"
        or model.config.audio_config.enable_fusion
    ):
        log.warning("fused CLAP model: only audio up to one window is exact (no fusion crops)")

    class TextTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return _features(
                self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            )

    class AudioTower(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_features: Any) -> Any:
            return _features(self.m.get_audio_features(input_features=input_features))

    enc = tokenizer(
        VERIFY_TEXTS, padding=True, truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="np"
    )
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    sr = int(fe.sampling_rate)
    clips = _synthetic_audio(sr, float(fe.nb_max_samples) / sr, 3)  # 2 traced, 3 checked
    feats = fe(clips, sampling_rate=sr, return_tensors="np", truncation="rand_trunc")[
        "input_features"
    ]
    feats = np.asarray(feats, dtype=np.float32)
    if feats.shape[1] != 1:
        feats = feats[:, :1]
    if model.config.audio_config.enable_fusion:
        feats = np.repeat(feats, 4, axis=1)

    report: dict[str, Any] = {
        "source": str(source),
        "exporter_version": EXPORTER_VERSION,
        "opset": opset,
        "quantize": quantize,
    }

    def write_files(tmp: Path) -> None:
        tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        fe_dict = {k: v for k, v in fe.to_dict().items() if not isinstance(v, np.ndarray)}
        (tmp / "preprocessor_config.json").write_text(json.dumps(fe_dict, indent=2, default=str))
        config = json.loads(model.config.to_json_string())
        config.update(
            projection_dim=int(model.config.projection_dim),
            max_text_length=MAX_TEXT_LENGTH,
            pad_token_id=int(tokenizer.pad_token_id),
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

    return export_folder(
        Path(out_dir),
        TextTower(),
        AudioTower(),
        {"input_ids": ids, "attention_mask": mask},
        feats[:2],
        write_files,
        report,
        t0=t0,
        opset=opset,
        quantize=quantize,
        verify=verify,
        check_feats=feats,
    )


def export_folder(
    out_dir: Path,
    text_tower: Any,
    audio_tower: Any,
    text_feed: dict[str, np.ndarray],
    feats: np.ndarray,
    write_files: Callable[[Path], None],
    report: dict[str, Any],
    *,
    t0: float,
    opset: int = 20,
    quantize: str | None = None,
    verify: bool = True,
    check_feats: np.ndarray | None = None,
    max_sequence: int = 512,
    audio_patches: Sequence[Callable[[], AbstractContextManager[Any]]] = (),
) -> Path:
    """Trace two towers (torch modules taking ``input_ids, attention_mask`` and
    ``input_features``) to ONNX with a dynamic batch (and sequence), check each against torch
    (audio on ``check_feats`` when given: a batch other than the traced one), quantize, let
    ``write_files`` add the tokenizer and configs, and move it all into ``out_dir`` only then.
    Every family's exporter ends here."""
    torch, _ = _require_export_deps()
    from insight.inference.export_patches import export_friendly

    ids, mask = (torch.from_numpy(text_feed[k]) for k in ("input_ids", "attention_mask"))
    check = feats if check_feats is None else check_feats
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp_s:
        tmp = Path(tmp_s)
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("sequence", min=2, max=max_sequence)
        with torch.no_grad():
            torch.onnx.export(
                text_tower.eval(),
                (ids, mask),
                str(tmp / "text_model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["text_embeds"],
                dynamo=True,
                external_data=False,
                opset_version=opset,
                dynamic_shapes={
                    "input_ids": {0: batch, 1: seq},
                    "attention_mask": {0: batch, 1: seq},
                },
            )
            with export_friendly(), contextlib.ExitStack() as patches:
                for patch in audio_patches:
                    patches.enter_context(patch())
                audio_tower(torch.from_numpy(feats))  # eager first: constants for the trace
                torch.onnx.export(
                    audio_tower.eval(),
                    (torch.from_numpy(feats),),
                    str(tmp / "audio_model.onnx"),
                    input_names=["input_features"],
                    output_names=["audio_embeds"],
                    dynamo=True,
                    external_data=False,
                    opset_version=opset,
                    dynamic_shapes={"input_features": {0: batch}},
                )
            ref_text = text_tower(ids, mask).numpy()
            ref_audio = audio_tower(torch.from_numpy(check)).numpy()
        report["export_s"] = round(time.perf_counter() - t0, 1)
        feeds = {"text": text_feed, "audio": {"input_features": check}}
        if verify:
            for tower, ref in (("text", ref_text), ("audio", ref_audio)):
                got = _ort_run(tmp / f"{tower}_model.onnx", feeds[tower])
                cos = float(_cosines(got, ref).min())
                diff = float(np.abs(got - ref).max())
                report[f"{tower}_max_abs_diff"] = diff
                report[f"{tower}_min_cosine"] = cos
                log.info(
                    "export_verify tower=%s max_abs_diff=%.3g min_cosine=%.7f", tower, diff, cos
                )
                if not cos >= MIN_COSINE:
                    raise ExportError(
                        f"{tower} tower: ONNX output differs from torch (min cosine {cos:.6f} < "
                        f"{MIN_COSINE}, max abs diff {diff:.3g}); nothing was written"
                    )
        _last_token(tmp / "text_model.onnx", text_feed, report)
        if quantize == "int8":
            for tower in ("text", "audio"):
                src, dst = tmp / f"{tower}_model.onnx", tmp / f"{tower}_model_quantized.onnx"
                quantize_int8(src, dst)
                feed = feeds[tower]
                cos = float(_cosines(_ort_run(dst, feed), _ort_run(src, feed)).min())
                report[f"{tower}_int8_min_cosine"] = cos
                log.info("export_quantized tower=%s min_cosine_vs_fp32=%.5f", tower, cos)
                if verify and not cos >= MIN_COSINE_INT8:
                    raise ExportError(f"{tower} int8 model too far from fp32 (cosine {cos:.4f})")
        write_files(tmp)
        report["total_s"] = round(time.perf_counter() - t0, 1)
        (tmp / "export.json").write_text(json.dumps(report, indent=2))
        for f in tmp.iterdir():
            if f.is_file():
                shutil.move(str(f), out_dir / f.name)
    log.info("export_done out=%s report=%s", out_dir, report)
    return out_dir


def _last_token(path: Path, text_feed: dict[str, np.ndarray], report: dict[str, Any]) -> None:
    """Replace ``path`` by its last-layer-on-token-0 rewrite where that gives the same
    vectors (:mod:`insight.inference.graph_rewrite.last_token`); ``report`` says which."""
    import onnx

    from insight.inference.graph_rewrite.last_token import checked

    rewritten, rep = checked(onnx.load(str(path)), text_feed)
    report.update(rep)
    if rewritten is not None:
        onnx.save(rewritten, str(path))
    log.info("export_text_last_token %s", rep)


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 (per-channel weights) of an fp32 ONNX file.

    The quantizer re-runs ONNX shape inference, which refuses a graph whose recorded
    ``value_info`` disagrees with it; torch 2.11's exporter leaves such stale entries (768 vs
    512 at the projection). They are only hints, so they are dropped before quantizing.
    Convolutions with short dot products stay fp32 (:mod:`.quant_rules`).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from insight.inference.quant_rules import short_convs

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    keep = short_convs(model)
    quantize_dynamic(
        model, dst, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep
    )
