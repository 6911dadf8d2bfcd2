"""Dynamic int8 keeps convolutions with short dot products in fp32 (ConvInteger is slower
there) and quantizes the rest as before. Real graphs quantized by ONNX Runtime's quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from insight.inference.export import quantize_int8
from insight.inference.ort_options import session_options
from insight.inference.quant_rules import MIN_CONV_K, short_convs


def patch_model() -> onnx.ModelProto:
    """A 4×4 patch embedding (K = 16), a 3×3 conv over 16 channels (K = 144) and a MatMul."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 1, 4, 4)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (16, 16, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 0.1, (16, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["p"], strides=[4, 4], name="patch"),
        helper.make_node("Conv", ["p", "w2"], ["c"], pads=[1, 1, 1, 1]),  # unnamed
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["t", "w3"], ["y"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_only_the_short_conv_is_named() -> None:
    model = patch_model()
    assert 16 < MIN_CONV_K < 144
    assert short_convs(model) == ["patch"]


def test_int8_keeps_the_patch_embedding_fp32(tmp_path: Path) -> None:
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(patch_model(), str(src))
    quantize_int8(src, dst)
    q = onnx.load(str(dst))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("Conv") == 1 and ops.count("ConvInteger") == 1
    assert any(op in ops for op in ("MatMulInteger", "DynamicQuantizeMatMul"))
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    weight = next(t for t in q.graph.initializer if t.name == conv.input[1])
    assert conv.name == "patch" and weight.data_type == TensorProto.FLOAT
    x = np.random.default_rng(1).normal(0, 1, (1, 1, 32, 32)).astype(np.float32)
    runs = (ort.InferenceSession(str(p), session_options(None)) for p in (src, dst))
    a, b = (s.run(None, {"x": x})[0].ravel() for s in runs)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99
