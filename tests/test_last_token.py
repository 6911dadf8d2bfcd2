"""The text tower's last layer on token 0 (graph_rewrite.last_token), on real graphs.

The small random CLAP exported by torch's legacy exporter as the hub's files were, the tiny
model (no transformer layers: the rewrite does not apply), real ONNX Runtime sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from insight.config import ModelSettings
from insight.inference.clap import ClapModel
from insight.inference.export import quantize_int8
from insight.inference.graph_rewrite import REWRITER_VERSION
from insight.inference.graph_rewrite.last_token import (
    checked,
    last_token_graph,
    refusal,
    text_feed,
)
from insight.inference.graph_rewrite.probe import session
from insight.inference.model_dir import find_model_files
from insight.inference.text import Tokenizer

TEXTS = [
    "calm piano",
    "a very long description of an energetic rock song with loud drums and guitars",
    "jazz",
    "ambient synth pads slowly evolving over an hour",
]


@pytest.fixture(scope="module")
def legacy_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from insight.testing.legacy_clap import build_legacy_clap

    return build_legacy_clap(tmp_path_factory.mktemp("legacy") / "small")


def _feeds(model_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Batch 1 and a batch of mixed lengths (padded), as ``embed_text`` makes them."""
    tok = Tokenizer.from_model_dir(model_dir)
    one_ids, one_mask = tok.encode_batch(TEXTS[:1])
    ids, mask = tok.encode_batch(TEXTS)
    assert len(set(mask.sum(axis=1).tolist())) == len(TEXTS)  # really mixed lengths
    return (
        {"input_ids": one_ids, "attention_mask": one_mask},
        {"input_ids": ids, "attention_mask": mask},
    )


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(session(model, optimize=True).run(None, feed)[0])


def _matmul_rows(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[int]:
    """Rows (batch x tokens) each weight MatMul of the graph multiplies, from ONNX Runtime."""
    from insight.inference.graph_rewrite.probe import data_dependent, elem_types, record

    dep = data_dependent(model.graph)
    mats = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in dep]
    vals = record(model, [n.input[0] for n in mats], elem_types(model), feed)
    return [int(np.prod(vals[n.input[0]].shape[:-1])) for n in mats]


def test_legacy_last_layer_on_token_zero_same_vectors(legacy_small: Path) -> None:
    files = find_model_files(legacy_small)
    original = onnx.load(str(files.text_model))
    one, mixed = _feeds(legacy_small)
    rewritten, report = last_token_graph(original, mixed)
    assert report.reshapes == 2 and report.masks == 1 and report.sliced_nodes > 10
    for feed in (one, mixed):
        want, got = _run(original, feed), _run(rewritten, feed)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # the last layer's query, attention output and feed-forward products now see one row per
    # text; everything before (and the last layer's key and value products) every token
    b, t = mixed["input_ids"].shape
    before, after = _matmul_rows(original, mixed), _matmul_rows(rewritten, mixed)
    assert before.count(b) == 0 and after.count(b) == 4  # query, attention out, FFN in/out
    assert after.count(b * t) == len(before) - 4


def test_a_wrong_rewrite_is_refused(legacy_small: Path) -> None:
    original = onnx.load(str(find_model_files(legacy_small).text_model))
    _, mixed = _feeds(legacy_small)
    rewritten, _ = last_token_graph(original, mixed)
    start = next(t for t in rewritten.graph.initializer if t.name.startswith("insight_rw/zero"))
    end = next(t for t in rewritten.graph.initializer if t.name.startswith("insight_rw/one"))
    start.CopyFrom(numpy_helper.from_array(np.array([1], np.int64), start.name))
    end.CopyFrom(numpy_helper.from_array(np.array([2], np.int64), end.name))  # token 1, not 0
    assert refusal(original, last_token_graph(original, mixed)[0], mixed) is None
    why = refusal(original, rewritten, mixed)
    assert why is not None and "differs from the original" in why


def test_rewrite_refused_where_it_does_not_apply(tiny_model_dir: Path) -> None:
    path = find_model_files(tiny_model_dir).text_model
    original = onnx.load(str(path))
    before = original.SerializeToString()
    _, mixed = _feeds(tiny_model_dir)
    rewritten, report = checked(original, mixed)
    assert rewritten is None
    assert report["text_rewritten"] is False
    assert report["text_refused"].startswith("not applicable:")
    assert original.SerializeToString() == before  # left untouched


def test_int8_of_the_rewritten_graph_matches_fp32(legacy_small: Path, tmp_path: Path) -> None:
    original = onnx.load(str(find_model_files(legacy_small).text_model))
    one, mixed = _feeds(legacy_small)
    rewritten, report = checked(original, mixed)
    assert rewritten is not None and report["text_rewritten"] is True
    fp32, int8 = tmp_path / "text.onnx", tmp_path / "text_int8.onnx"
    onnx.save(rewritten, str(fp32))
    quantize_int8(fp32, int8)
    assert any(n.op_type.startswith("DynamicQuantize") for n in onnx.load(str(int8)).graph.node)
    for feed in (one, mixed):
        a, b = _run(original, feed), _run(onnx.load(str(int8)), feed)
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.all(cos >= 0.999), cos


def test_text_feed_cuts_and_pads() -> None:
    base = {"input_ids": np.array([[0, 5, 6, 2], [0, 7, 2, 1]]), "attention_mask": None}
    base["attention_mask"] = (base["input_ids"] != 1).astype(np.int64)
    f = text_feed(base, 3, 6)
    assert f["input_ids"].tolist() == [
        [0, 5, 6, 2, 1, 1],
        [0, 7, 2, 1, 1, 1],
        [0, 5, 6, 2, 1, 1],
    ]
    assert f["attention_mask"].sum(axis=1).tolist() == [4, 3, 4]
    assert text_feed(base, 1, 2)["input_ids"].tolist() == [[0, 5]]


def test_cache_serves_the_rewritten_text_tower(legacy_small: Path, tmp_path: Path) -> None:
    cache = tmp_path / "graphs"
    ref = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "ref")
    fast = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=False), "x", cache)
    (out,) = [d for d in cache.iterdir() if d.is_dir()]
    assert out.name.endswith(f"-r{REWRITER_VERSION}") and REWRITER_VERSION >= 3
    report = json.loads((out / "report.json").read_text())
    assert report["text_rewritten"] is True and report["text_last_token"]["masks"] == 1
    assert fast.towers.text == out / "text_model.onnx" and not fast.text_quantized
    np.testing.assert_allclose(fast.embed_text(TEXTS), ref.embed_text(TEXTS), atol=1e-5, rtol=0)
    q = ClapModel.load(legacy_small, ModelSettings(threads=1, quantized=True), "q", cache)
    assert q.text_quantized and q.towers.text.name == "text_model_int8.onnx"
    cos = np.sum(q.embed_text(TEXTS) * ref.embed_text(TEXTS), axis=1)
    assert np.all(cos >= 0.999), cos
    assert json.loads((out / "report.json").read_text())["text_int8_min_cosine"] >= 0.999
