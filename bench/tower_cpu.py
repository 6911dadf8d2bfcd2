"""CPU time of one 10 s window through each audio tower, on one thread (not a test).

On a box shared with other jobs wall-clock medians swing 2x between runs. With one thread,
ONNX Runtime and torch both run the whole window on the calling thread, so that thread's CPU
time is the work the graph needs, whatever else the cores are doing. Same weights everywhere:
transformers eager, the hub-layout graph (legacy exporter) as found and as the service runs it
after the load-time rewrite, and our export; fp32 and int8. Uses (and builds when missing) the
work folder of bench/inference.py.

    .venv/bin/python bench/tower_cpu.py [--work-dir DIR] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_isa, cpu_model
from bench.inference import build_graphs
from insight.config import ModelSettings
from insight.inference.clap import ClapModel, session_options


def cpu_ms(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, dict[str, float]]:
    """Median and min thread CPU ms per call, candidates alternating call by call."""
    for fn in fns.values():
        fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.thread_time()
            fn()
            ts[k].append((time.thread_time() - t0) * 1000.0)
    return {k: {"median": statistics.median(v), "min": min(v)} for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    session_options(1)
    import onnxruntime as ort
    import torch
    from transformers import ClapModel as HFClap

    from insight.inference.export import (
        EXPORTER_VERSION,
        quantize_int8,
    )

    torch.set_num_threads(1)
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    src, ours, hub = build_graphs(work)
    served = ClapModel.load(hub, ModelSettings(threads=1), "hub", work / "graphs")
    rewritten = served.towers.audio.parent
    as_found_int8 = work / "hub_as_found_int8.onnx"
    if not as_found_int8.exists():
        quantize_int8(hub / "onnx" / "audio_model.onnx", as_found_int8)
    graphs = {
        "hub as found fp32 (legacy graph)": hub / "onnx" / "audio_model.onnx",
        "hub rewritten fp32": rewritten / "audio_model.onnx",
        f"ours fp32 (exporter v{EXPORTER_VERSION})": ours / "audio_model.onnx",
        "hub as found int8 (not rewritten)": as_found_int8,
        "hub rewritten int8 (the default)": rewritten / "audio_model_int8.onnx",
        "ours int8": ours / "audio_model_quantized.onnx",
    }
    opts = session_options(None)
    x = np.random.default_rng(0).uniform(-80, 0, (1, 1, 1001, 64)).astype(np.float32)
    fns: dict[str, Callable[[], Any]] = {}
    outs: dict[str, np.ndarray] = {}
    for name, path in graphs.items():
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {s.get_inputs()[0].name: x}
        fns[name] = lambda s=s, feed=feed: s.run(None, feed)
        outs[name] = np.asarray(s.run(None, feed)[0])[0]
    hf = HFClap.from_pretrained(src).eval()
    xt = torch.from_numpy(x)

    def eager() -> Any:
        with torch.no_grad():
            return hf.get_audio_features(input_features=xt).pooler_output

    fns = {"transformers eager": eager, **fns}
    ref = eager().numpy()[0]
    res = cpu_ms(fns, args.reps)
    base = res["transformers eager"]["median"]
    print(f"# {cpu_model()} isa={','.join(cpu_isa())}, 1 thread, thread CPU time, {args.reps} reps")
    print("| graph | median ms | min ms | x transformers | cos vs transformers |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        v = outs.get(name, ref)
        cos = float(v @ ref / (np.linalg.norm(v) * np.linalg.norm(ref)))
        print(
            f"| {name} | {r['median']:.1f} | {r['min']:.1f} | {base / r['median']:.2f} "
            f"| {cos:.6f} |"
        )
    print(json.dumps({"bench": "tower_cpu", "cpu": cpu_model(), "isa": cpu_isa(), **res}))


if __name__ == "__main__":
    main()
