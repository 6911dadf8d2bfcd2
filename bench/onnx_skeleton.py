"""A full-size ONNX graph without its random weights, and those weights made up again.

A device machine takes 64 MiB per call and cannot reach a registry, so the full-size towers
(119 MB audio, 502 MB text fp32) cannot travel, and exporting them there needs that machine's
torch and transformers to match ours. ``strip`` keeps every node and every initializer that is
not a large float tensor (the token gathers' indices, shapes, masks) and drops the float data;
``fill`` puts random N(0, 0.02) values of the same shapes back (timing only: they are not the
weights of any torch model, so no parity can be checked against one).

    python bench/onnx_skeleton.py strip SRC.onnx DST.onnx
    python bench/onnx_skeleton.py fill SRC.onnx DST.onnx
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MIN_STRIP = 4096  # elements: smaller float tensors (biases, scalars) stay as they are
STRIPPED = "insight_stripped"


def strip(src: str, dst: str) -> None:
    model = onnx.load(src)
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        if t.data_type == TensorProto.FLOAT and n >= MIN_STRIP:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.doc_string = STRIPPED
    onnx.save(model, dst)


def fill(src: str, dst: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    model = onnx.load(src)
    for t in model.graph.initializer:
        if t.doc_string == STRIPPED:
            values = (0.02 * rng.standard_normal(tuple(t.dims))).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(values, t.name))
    onnx.save(model, dst, save_as_external_data=model.ByteSize() > 1_900_000_000)


if __name__ == "__main__":
    {"strip": strip, "fill": fill}[sys.argv[1]](sys.argv[2], sys.argv[3])
