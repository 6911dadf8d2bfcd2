"""The load-time rewrite of CLAP audio graphs we did not export (legacy-exporter / hub files).

Real graphs: a small random CLAP and a full-size clap-htsat-unfused audio tower with random
weights, both exported by torch's legacy exporter as the hub's files were; real ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from insight.config import ModelSettings
from insight.inference import fast_graph
from insight.inference.clap import ClapModel
from insight.inference.graph_rewrite import rewrite_graph
from insight.inference.graph_rewrite.probe import data_dependent, session
from insight.inference.model_dir import find_model_files

MOVERS = {"Slice", "Split", "Resize", "Pad"}


@pytest.fixture(scope="module")
def legacy_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from insight.testing.legacy_clap import build_legacy_clap

    return build_legacy_clap(tmp_path_factory.mktemp("legacy") / "small")


@pytest.fixture(scope="module")
def legacy_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full clap-htsat-unfused audio architecture (random weights), built once."""
    from insight.testing.legacy_clap import build_legacy_clap

    return build_legacy_clap(tmp_path_factory.mktemp("legacy") / "full", small=False, text=False)


def feeds(n_mels: int = 64, batches: tuple[int, ...] = (1, 2, 3, 5)) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        {"input_features": rng.uniform(-80, 0, (b, 1, 1001, n_mels)).astype(np.float32)}
        for b in batches
    ]


def swin_movers(model: onnx.ModelProto) -> list[str]:
    """Data-moving Slice/Split/Resize/Pad nodes left on the activations."""
    dep = data_dependent(model.graph)
    return [n.name for n in model.graph.node if n.op_type in MOVERS and n.input[0] in dep]


def check_rewrite(path: Path, layers: int) -> None:
    original = onnx.load(str(path))
    assert len(swin_movers(original)) > layers  # the legacy graph has them (rolls, pads, ...)
    f1, f2, f3, f5 = feeds()
    new, report = rewrite_graph(original, f1, f2, f3)
    # every Swin layer's partition (and shifted ones' reverse), the three patch mergings
    assert report.regions >= layers + 3
    assert report.resizes == 1
    assert swin_movers(new) == []
    assert report.nodes_after < report.nodes_before / 2
    # every norm spelled out by the legacy exporter is one LayerNormalization node again
    # (two per Swin block at least), none is left as ReduceMean/Sub/Pow/...
    ops = [n.op_type for n in new.graph.node]
    assert report.layer_norms >= 2 * layers
    assert ops.count("LayerNormalization") == report.layer_norms
    assert "ReduceMean" in [n.op_type for n in original.graph.node]
    assert "ReduceMean" not in ops and "Pow" not in ops
    a, b = session(original, optimize=True), session(new, optimize=True)
    for feed in (f1, f3, f5):
        want, got = a.run(None, feed)[0], b.run(None, feed)[0]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-5


def test_rewrite_small_legacy_graph(legacy_small: Path) -> None:
    check_rewrite(legacy_small / "onnx" / "audio_model.onnx", layers=6)


def test_rewrite_full_size_legacy_graph(legacy_full: Path) -> None:
    check_rewrite(legacy_full / "onnx" / "audio_model.onnx", layers=12)


def _mel() -> np.ndarray:
    return feeds(batches=(8,))[0]["input_features"]


def test_corrupted_rewrite_is_refused_and_the_original_kept(
    legacy_small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def corrupt(model: onnx.ModelProto, *feed: dict[str, Any]) -> tuple[onnx.ModelProto, Any]:
        new, report = rewrite_graph(model, *feed)
        order = next(t for t in new.graph.initializer if "order" in t.name)
        idx = numpy_helper.to_array(order).copy()
        idx[[0, 1]] = idx[[1, 0]]  # two tokens swapped: a subtle, wrong graph
        order.CopyFrom(numpy_helper.from_array(idx, order.name))
        return new, report

    files = find_model_files(legacy_small)
    ids = np.array([[0, 10, 11, 2]], np.int64)
    text = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    towers = fast_graph.cached(files, tmp_path, None, text, _mel(), rewrite=corrupt)
    assert towers.how == "original (rewrite refused)"
    (out,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    report = json.loads((out / "report.json").read_text())
    assert report["audio_rewritten"] is False
    assert "differs from the original" in report["audio_refused"]
    assert not (out / "audio_model.onnx").exists()
    assert "graph_rewrite_refused" in caplog.text
    # int8 (when chosen) is made from the original graph, not the refused one
    assert towers.audio in (files.audio_model, out / "audio_model_int8.onnx")


def test_clap_load_runs_the_cached_rewrite(
    legacy_small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "graphs"
    fp32 = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "ref")
    assert fp32.towers.how == "as found" and not fp32.quantized  # no cache dir: the files as is
    with caplog.at_level(logging.INFO, logger="insight.inference"):
        fast = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "x", cache)
    # the slow first load says what it is doing before it starts, and when it is done
    said = [r.getMessage().split()[0] for r in caplog.records]
    assert said.index("graph_cache_building") < said.index("graph_cache_built"), said
    assert fast.towers.how == "rewritten"
    assert fast.towers.audio.parent.parent == cache and not fast.quantized
    (out,) = [d for d in cache.iterdir() if d.is_dir()]
    report = json.loads((out / "report.json").read_text())
    assert report["rewriter_version"] >= 1 and report["rewrite"]["regions"] >= 9
    # fp32 asked for: nothing quantized (the text tower's quantizing is the first load's peak)
    assert report["int8_built"] is False and not list(out.glob("*_int8.onnx"))
    rng = np.random.default_rng(3)
    windows = (0.1 * rng.standard_normal((3, 480_000))).astype(np.float32)
    want = fp32.embed_windows(windows)
    np.testing.assert_allclose(fast.embed_windows(windows), want, atol=1e-5)
    # unset: int8 per tower where the measured cosine to fp32 reaches the bar
    auto = ClapModel.load(legacy_small, ModelSettings(threads=1), "x", cache)
    report = json.loads((out / "report.json").read_text())  # made again, with int8
    assert report["int8_built"] is True
    for tower, used in (("audio", auto.quantized), ("text", auto.text_quantized)):
        assert used == (report[f"{tower}_int8_min_cosine"] >= fast_graph.INT8_MIN_COSINE)
    forced = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=True), "x", cache)
    assert forced.quantized and forced.text_quantized
    assert forced.towers.audio.name == "audio_model_int8.onnx"
    cos = np.sum(forced.embed_windows(windows) * want, axis=1)
    assert np.all(cos > 0.99)
    # a second load reads the cache: same folder, report untouched
    stamp = (out / "report.json").stat().st_mtime_ns
    again = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "x", cache)
    assert again.towers.audio == fast.towers.audio
    assert (out / "report.json").stat().st_mtime_ns == stamp
    assert [d for d in cache.iterdir() if d.is_dir()] == [out]


def test_cache_key_follows_the_source_bytes(legacy_small: Path, tmp_path: Path) -> None:
    files = find_model_files(legacy_small)
    memo = tmp_path / "hashes.json"
    first = fast_graph.file_digest([files.text_model, files.audio_model], memo)
    assert fast_graph.file_digest([files.text_model, files.audio_model], memo) == first
    copy = tmp_path / "m" / "onnx"
    copy.mkdir(parents=True)
    for f in (files.text_model, files.audio_model):
        (copy / f.name).write_bytes(f.read_bytes())
    paths = [copy / files.text_model.name, copy / files.audio_model.name]
    assert fast_graph.file_digest(paths, memo) == first  # same bytes elsewhere: same key
    with paths[1].open("ab") as f:
        f.write(b"\0")
    assert fast_graph.file_digest(paths, memo) != first


def test_our_export_is_not_rewritten(tiny_model_dir: Path, tmp_path: Path) -> None:
    m = ClapModel.load(tiny_model_dir, ModelSettings(threads=1), "tiny", tmp_path / "graphs")
    assert m.towers.how == "export" and not m.quantized
    assert not (tmp_path / "graphs").exists()


def test_an_unusable_cache_dir_runs_the_files_as_found(
    legacy_small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "graphs"
    blocker.write_text("not a folder")
    m = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "x", blocker)
    assert m.towers.how == "as found"
    assert m.towers.audio == find_model_files(legacy_small).audio_model
    assert "graph_cache_unavailable" in caplog.text
    assert m.embed_text(["rock"]).shape == (1, m.dim)
