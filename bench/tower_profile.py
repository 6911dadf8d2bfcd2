"""Where one 10 s window's time goes in an audio tower: ONNX Runtime's profile, one thread.

Per-op totals (share, and ms per run), the matrix products' achieved GOP/s by shape, and the
peak of this CPU for one large fp32 and int8 product to compare them with. Warm-up runs are left
out. The profiler's durations are wall time, which on a shared box includes time the thread
waited for a core; they are scaled so that they add up to the thread's CPU time per run (the
shares are the profiler's own). Not a test; numbers go to BENCHMARKS.md.

    .venv/bin/python bench/tower_profile.py GRAPH.onnx [GRAPH.onnx ...] [--reps N]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_isa, cpu_model

WARMUP = 3
GEMMS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMul", "FusedMatMul", "Gemm"}


def _options(profile_dir: str | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_dir:
        opts.enable_profiling = True
        opts.profile_file_prefix = f"{profile_dir}/tower"
    return opts


def profile(path: Path, reps: int, tmp: str) -> dict[str, Any]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), _options(tmp), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-80, 0, (1, 1, 1001, 64)).astype(np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(WARMUP):
        sess.run(None, feed)
    t0 = time.thread_time()
    for _ in range(reps):
        sess.run(None, feed)
    cpu_ms = (time.thread_time() - t0) * 1000 / reps
    events = json.loads(Path(sess.end_profiling()).read_text())
    start = sorted(e["ts"] for e in events if e.get("name") == "model_run")[WARMUP]
    ops: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    gemm: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e["ts"] < start or e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        a = e["args"]
        ops[a["op_name"]] += e["dur"]
        count[a["op_name"]] += 1
        if a["op_name"] in GEMMS:
            ins = [next(iter(s.values())) for s in a["input_type_shape"]]
            out = next(iter(a["output_type_shape"][0].values()))
            key = f"{a['op_name']} {ins[0][-2:]}x{out[-1]}"
            gemm[key][0] += e["dur"]
            gemm[key][1] += 2.0 * ins[0][-1] * float(np.prod(out))
    total = sum(ops.values())

    def ms(us: float) -> float:  # a share of the profile as CPU ms per run
        return us / total * cpu_ms

    return {
        "cpu_ms": round(cpu_ms, 2),
        "kernel_ms": round(total / reps / 1000, 2),
        "ops": {
            k: [round(ms(v), 2), round(100 * v / total, 1), count[k] // reps]
            for k, v in ops.most_common()
        },
        "gemm_gops": {
            k: [round(ms(t), 2), round(f / reps / (ms(t) / 1000) / 1e9, 0)]
            for k, (t, f) in sorted(gemm.items(), key=lambda kv: -kv[1][0])
        },
    }


def peak(tmp: str) -> dict[str, float]:
    """GOP/s of one 1024x768x3072 product on this thread, fp32 and dynamic int8."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m, k, n = 1024, 768, 3072
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.05, (k, n)).astype("f4"), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [w],
    )
    fp32, int8 = f"{tmp}/gemm.onnx", f"{tmp}/gemm_int8.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), fp32)
    logging.disable(logging.WARNING)
    quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8)
    logging.disable(logging.NOTSET)
    x = np.random.default_rng(1).normal(0, 1, (m, k)).astype(np.float32)
    res = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        s = ort.InferenceSession(path, _options(None), providers=["CPUExecutionProvider"])
        s.run(None, {"x": x})
        ts = []
        for _ in range(9):
            t0 = time.thread_time()
            s.run(None, {"x": x})
            ts.append(time.thread_time() - t0)
        res[f"{name}_gops"] = round(2 * m * k * n / float(np.median(ts)) / 1e9, 0)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graphs", type=Path, nargs="+")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"# {cpu_model()} isa={','.join(cpu_isa())}, 1 thread, {args.reps} profiled runs")
        result: dict[str, Any] = {"peak": peak(tmp)}
        print(f"peak of one large product: {result['peak']}")
        for path in args.graphs:
            r = profile(path, args.reps, tmp)
            result[str(path)] = r
            cpu, wall = r["cpu_ms"], r["kernel_ms"]
            print(f"\n## {path}: {cpu} ms CPU per run ({wall} ms wall in kernels)")
            for op, (ms, share, n) in list(r["ops"].items())[:14]:
                print(f"| {op} | {ms} ms | {share} % | {n} nodes |")
            for key, (ms, gops) in list(r["gemm_gops"].items())[:8]:
                print(f"  {key}: {ms} ms, {gops:.0f} GOP/s")
    print(json.dumps({"bench": "tower_profile", "cpu": cpu_model(), "isa": cpu_isa(), **result}))


if __name__ == "__main__":
    main()
