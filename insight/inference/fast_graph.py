"""Which ONNX files a model runs: our export as it is, any other CLAP folder rewritten.

A folder we did not export (the hub's Xenova files, made by the legacy exporter) gets on first
load what our exporter does on the torch side: the audio graph is rewritten
(:mod:`insight.inference.graph_rewrite`), the text graph's last layer put on token 0
(:mod:`insight.inference.graph_rewrite.last_token`), each checked against the original on fixed
inputs (kept only if no output moves by more than 1e-5), both towers are quantized (dynamic int8,
per-channel s8 weights) and int8 is measured against fp32. Everything lands in
``<cache>/<hash of the source files>-r<rewriter version>/`` with a ``report.json`` saying what
was kept and why, so later loads only read it.

int8 by default, per tower: where its cosine to fp32 on the fixed inputs is at least
``INT8_MIN_COSINE`` (``INSIGHT_MODEL__QUANTIZED`` unset); ``true`` forces int8, ``false`` fp32.
The audio tower serves both bulk scans and live streams, so they share one decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from insight.inference.model_dir import ModelFiles

log = logging.getLogger(__name__)

INT8_MIN_COSINE = 0.999
REPORT = "report.json"

Feed = dict[str, np.ndarray]
Rewrite = Callable[[Any, Feed, Feed, Feed], tuple[Any, Any]]


@dataclass(frozen=True)
class Towers:
    """The files to run and whether each is int8; ``how`` says where they came from."""

    text: Path
    audio: Path
    text_int8: bool
    audio_int8: bool
    how: str


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:  # pragma: no cover - onnx is a runtime dependency
        return False
    return True


def _sibling_int8(path: Path) -> Path:
    return path.with_name(path.name.replace(".onnx", "_quantized.onnx"))


def _wants_int8(quantized: bool | None, cosine: float | None) -> bool:
    if quantized is not None:
        return quantized
    return cosine is not None and cosine >= INT8_MIN_COSINE


def export_report(root: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """``export.json`` of a folder our exporter made, ``{}`` for one our test builders made
    (an ``insight`` entry in its config.json), else None: a folder to rewrite."""
    try:
        report = json.loads((Path(root) / "export.json").read_text())
    except (OSError, ValueError):
        report = None
    if isinstance(report, dict) and "exporter_version" in report:
        return report
    return {} if isinstance(config.get("insight"), dict) else None


def for_export(files: ModelFiles, quantized: bool | None, report: dict[str, Any]) -> Towers:
    """Our own export: its fp32 towers, or the int8 ones it verified."""
    paths: dict[str, Path] = {}
    int8: dict[str, bool] = {}
    for tower, fp32 in (("text", files.text_model), ("audio", files.audio_model)):
        q = fp32 if fp32.name.endswith("_quantized.onnx") else _sibling_int8(fp32)
        use = q.is_file() and _wants_int8(quantized, report.get(f"{tower}_int8_min_cosine"))
        paths[tower], int8[tower] = (q if use else fp32), use
    return Towers(paths["text"], paths["audio"], int8["text"], int8["audio"], "export")


def file_digest(paths: list[Path], memo_file: Path) -> str:
    """sha256 of the files' bytes, remembered by path, size and mtime (600 MB hash once)."""
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = memo.get(str(p.resolve()))
        if isinstance(entry, list) and entry[:2] == stamp:
            digest = str(entry[2])
        else:
            fh = hashlib.sha256()
            with p.open("rb") as f:
                while block := f.read(1 << 22):
                    fh.update(block)
            digest = fh.hexdigest()
            memo[str(p.resolve())] = [*stamp, digest]
        h.update(digest.encode())
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        memo_file.write_text(json.dumps(memo))
    except OSError:
        pass
    return h.hexdigest()[:24]


class _QuietQuantizer(logging.Filter):
    """ONNX Runtime's quantizer logs one INFO line per tensor on the root logger; a filter on
    the root logger itself sees only such direct records, never ours (they propagate)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _quantize_quietly(src: Path, dst: Path) -> None:
    from insight.inference.export import quantize_int8

    root, quiet = logging.getLogger(), _QuietQuantizer()
    root.addFilter(quiet)
    try:
        quantize_int8(src, dst)
    finally:
        root.removeFilter(quiet)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return float(np.min(np.sum(a * b, axis=-1)))


def _first_output(path: Path, feed: Feed) -> np.ndarray:
    import onnxruntime as ort

    from insight.inference.ort_options import session_options

    sess = ort.InferenceSession(
        str(path), session_options(None), providers=["CPUExecutionProvider"]
    )
    names = {i.name for i in sess.get_inputs()}
    return np.asarray(sess.run(None, {k: v for k, v in feed.items() if k in names})[0])


def audio_feeds(graph: Any, feats: np.ndarray) -> dict[int, Feed]:
    """Feeds of batch 1, 2, 3 and ``len(feats)`` for an audio graph, as ``embed_features``
    makes them (fused models take 4 copies of the mel and an ``is_longer`` flag)."""
    feeds: dict[int, Feed] = {}
    for n in sorted({1, 2, 3, len(feats)}):
        feed: Feed = {}
        for inp in graph.input:
            dims = inp.type.tensor_type.shape.dim
            if "longer" in inp.name:
                feed[inp.name] = np.zeros((n, 1), dtype=bool)
                continue
            channels = dims[1].dim_value if len(dims) == 4 and dims[1].dim_value > 1 else 1
            feed[inp.name] = np.repeat(feats[:n], channels, axis=1)
        feeds[n] = feed
    return feeds


def _text_rewritten(src: Path, text_feed: Feed, tmp: Path, report: dict[str, Any]) -> Path:
    """The text graph with its last layer on token 0 (written into ``tmp``) where that was
    checked to give the same vectors, else ``src``; ``report`` says which and why."""
    if src.name.endswith("_quantized.onnx"):
        return src
    import onnx

    from insight.inference.graph_rewrite.last_token import checked

    rewritten, rep = checked(onnx.load(str(src)), text_feed)
    report.update(rep)
    if rewritten is None:
        log.info("text_rewrite_refused source=%s reason=%s", src, rep.get("text_refused"))
        return src
    onnx.save(rewritten, str(tmp / "text_model.onnx"))
    return tmp / "text_model.onnx"


def build_cache(
    files: ModelFiles,
    out: Path,
    text_feed: Feed,
    feats: np.ndarray,
    rewrite: Rewrite | None = None,
    quantize: bool = True,
) -> dict[str, Any]:
    """Rewrite, verify and (with ``quantize``) quantize into ``out`` (made atomically);
    returns its report. Quantizing the 500 MB text tower is most of the ~3 GB peak RSS."""
    import onnx

    from insight.inference.graph_rewrite import REWRITER_VERSION, rewrite_graph
    from insight.inference.graph_rewrite.verify import refusal

    rewrite = rewrite or rewrite_graph
    t0 = time.perf_counter()
    log.info(  # the load is silent for this long otherwise
        "graph_cache_building model=%s hint='first load of this model: its graphs are "
        "rewritten, checked and quantized once (~30 s and ~3 GB on 2 cores)'",
        files.root,
    )
    report: dict[str, Any] = {
        "rewriter_version": REWRITER_VERSION,
        "source_text": files.text_model.name,
        "source_audio": files.audio_model.name,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".build-"))
    try:
        original = onnx.load(str(files.audio_model))
        fp32_audio = files.audio_model
        by_batch = audio_feeds(original.graph, feats)
        checks = [by_batch[1], by_batch[3], by_batch[len(feats)]]
        try:
            rewritten, rep = rewrite(original, by_batch[1], by_batch[2], by_batch[3])
            report["rewrite"] = rep.as_dict()
            why = refusal(original, rewritten, checks, rep.checkpoints)
        except Exception as exc:
            why = f"rewrite failed: {type(exc).__name__}: {exc}"
        if why is None:
            onnx.save(rewritten, str(tmp / "audio_model.onnx"))
            fp32_audio = tmp / "audio_model.onnx"
            report["audio_rewritten"] = True
        else:
            report["audio_rewritten"] = False
            report["audio_refused"] = why
            log.warning("graph_rewrite_refused model=%s reason=%s", files.root, why)
        del original
        fp32_text = _text_rewritten(files.text_model, text_feed, tmp, report)
        report["int8_built"] = quantize
        for tower, src, feeds in (
            ("audio", fp32_audio, [by_batch[len(feats)]]),
            ("text", fp32_text, [text_feed]),
        ):
            if not quantize or src.name.endswith("_quantized.onnx"):
                continue  # fp32 asked for, or only int8 files: nothing to quantize
            dst = tmp / f"{tower}_model_int8.onnx"
            try:
                _quantize_quietly(src, dst)
                cos = min(_cosine(_first_output(dst, f), _first_output(src, f)) for f in feeds)
                report[f"{tower}_int8_min_cosine"] = round(cos, 6)
            except Exception as exc:
                report[f"{tower}_int8_error"] = f"{type(exc).__name__}: {exc}"
                dst.unlink(missing_ok=True)
        report["build_s"] = round(time.perf_counter() - t0, 1)
        (tmp / REPORT).write_text(json.dumps(report, indent=2))
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("graph_cache_built dir=%s report=%s", out, report)
    return report


def cached(
    files: ModelFiles,
    cache_dir: Path,
    quantized: bool | None,
    text_feed: Feed,
    feats: np.ndarray,
    rewrite: Rewrite | None = None,
) -> Towers:
    """A folder we did not export: its rewritten (and int8) towers from ``cache_dir``."""
    from insight.inference.graph_rewrite import REWRITER_VERSION

    key = file_digest([files.text_model, files.audio_model], cache_dir / "hashes.json")
    out = cache_dir / f"{key}-r{REWRITER_VERSION}"
    want_int8 = quantized is not False
    try:
        report = json.loads((out / REPORT).read_text())
    except (OSError, ValueError):
        report = None
    if report is None or (want_int8 and not report.get("int8_built")):
        if report is not None:  # made for fp32 only; int8 is wanted now
            shutil.rmtree(out, ignore_errors=True)
        report = build_cache(files, out, text_feed, feats, rewrite, quantize=want_int8)
    audio = out / "audio_model.onnx" if report.get("audio_rewritten") else files.audio_model
    text = out / "text_model.onnx" if report.get("text_rewritten") else files.text_model
    paths, int8 = {"text": text, "audio": audio}, {"text": False, "audio": False}
    for tower in ("text", "audio"):
        src = files.text_model if tower == "text" else files.audio_model
        if src.name.endswith("_quantized.onnx"):
            int8[tower] = True  # only int8 files in the folder
            continue
        q = out / f"{tower}_model_int8.onnx"
        if q.is_file() and _wants_int8(quantized, report.get(f"{tower}_int8_min_cosine")):
            paths[tower], int8[tower] = q, True
    how = "rewritten" if report.get("audio_rewritten") else "original (rewrite refused)"
    return Towers(paths["text"], paths["audio"], int8["text"], int8["audio"], how)
