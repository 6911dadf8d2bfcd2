"""What a graph computes at a fixed input: values of its shape tensors and of chosen activations.

The rewrites need numbers the legacy exporter left as runtime computations (reshape targets,
slice bounds, pad widths, the shapes of activations). They are read off ONNX Runtime itself by
running the graph once per batch size with those tensors as extra outputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

# Ops whose output depends on the shape of their input, not on its values.
SHAPE_OPS = frozenset({"Shape", "Size"})


def data_dependent(graph: onnx.GraphProto) -> set[str]:
    """Tensors whose values depend on the values of a graph input (not only on its shape)."""
    dep = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    for node in graph.node:  # ONNX nodes are in topological order
        if node.op_type in SHAPE_OPS:
            continue
        if any(i in dep for i in node.input if i):
            dep.update(o for o in node.output if o)
    return dep


def elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that ONNX type inference can name."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=False)
    g = inferred.graph
    out: dict[str, int] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        t = vi.type.tensor_type.elem_type
        if t:
            out[vi.name] = t
    for init in g.initializer:
        out[init.name] = init.data_type
    return out


def session(model: onnx.ModelProto, optimize: bool = False) -> ort.InferenceSession:
    from insight.inference.ort_options import session_options

    opts = session_options(None)
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def record(
    model: onnx.ModelProto, names: list[str], types: dict[str, int], feed: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Values of ``names`` (tensors of ``model``) when it runs on ``feed``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n not in have and n in types]
    for n in wanted:
        probe.graph.output.append(helper.make_tensor_value_info(n, types[n], None))
    sess = session(probe)
    outs = [o.name for o in sess.get_outputs()]
    values = sess.run(None, feed)
    return {n: np.asarray(v) for n, v in zip(outs, values, strict=True) if n in names}


def run_subgraph(
    nodes: list[onnx.NodeProto],
    x_name: str,
    x: np.ndarray,
    constants: dict[str, np.ndarray],
    outputs: list[str],
    types: dict[str, int],
    opset: list[onnx.OperatorSetIdProto],
    ir_version: int,
) -> list[np.ndarray]:
    """Run ``nodes`` alone, on ``x`` for input ``x_name``, other inputs fixed to ``constants``."""
    graph = helper.make_graph(
        list(nodes),
        "probe",
        [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(o, types.get(o, TensorProto.FLOAT), None) for o in outputs],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=opset, ir_version=ir_version)
    return [np.asarray(v) for v in session(model).run(outputs, {x_name: x})]
