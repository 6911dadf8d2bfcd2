"""Explore int8 variants of the HTSAT audio tower (issue 4).

Builds quantized variants of an exported ``audio_model.onnx`` into ``--work`` (skipped when
already there), then times them interleaved in one process (round-robin, medians) at batch 1
and batch 4 and compares their embeddings with fp32 on 8 synthetic music windows.

    .venv/bin/python bench/quant_audio.py --onnx-dir /tmp/insight-bench/onnx \
        --work /tmp/insight-bench/quant --reps 11
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from insight.inference.audio import MelConfig, MelExtractor


def music_windows(n: int, seed: int, sr: int = 48_000, seconds: float = 10.0) -> np.ndarray:
    """Music-like windows: a few harmonic notes with envelopes plus noise (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = np.empty((n, t.size), dtype=np.float32)
    for i in range(n):
        x = np.zeros_like(t)
        for _ in range(rng.integers(2, 6)):
            f0 = 55.0 * 2 ** (rng.integers(0, 48) / 12)
            onset = rng.uniform(0, seconds * 0.7)
            env = np.clip((t - onset) * 20, 0, 1) * np.exp(-np.clip(t - onset, 0, None) * 0.7)
            for h in range(1, 6):
                if f0 * h < sr / 2:
                    x += env * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28)) / h**1.3
        x *= 0.3 / max(np.abs(x).max(), 1e-6)
        x += rng.uniform(0.005, 0.05) * rng.standard_normal(t.size)
        out[i] = x
    return out


def features(n: int, seed: int) -> np.ndarray:
    return MelExtractor(MelConfig())(music_windows(n, seed))


def build(src: Path, work: Path, calib: np.ndarray) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input_features": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    import onnx

    g = onnx.load(str(src)).graph
    consts = {i.name for i in g.initializer} | {
        n.output[0] for n in g.node if n.op_type == "Constant"
    }
    # attention MatMuls (activation x activation: QK^T and attn @ V)
    attention = [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] not in consts]
    specs: dict[str, dict] = {
        # every Conv/MatMul/Gemm (attention MatMuls included), MinMax calibration
        "qdq_u8s8": dict(activation_type=QuantType.QUInt8),
        # weights-only: attention MatMuls stay fp32
        "qdq_u8s8_wonly": dict(activation_type=QuantType.QUInt8, nodes_to_exclude=attention),
        "qdq_u8s8_pertensor": dict(activation_type=QuantType.QUInt8, per_channel=False),
        "qdq_s8s8": dict(activation_type=QuantType.QInt8),
        "qdq_u8s8_pct": dict(
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.99},
        ),
    }
    for name, kw in specs.items():
        dst = work / f"audio_{name}.onnx"
        if not dst.exists():
            t0 = time.perf_counter()
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
                **{"per_channel": True, **kw},
            )
            print(f"built {name} in {time.perf_counter() - t0:.0f}s", flush=True)
        out[name] = dst
    # ORT transformers optimizer (only BiasGelu fuses on this graph), then dynamic int8
    dst = work / "audio_dyn_tfopt.onnx"
    if not dst.exists():
        from onnxruntime.quantization import quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model

        fused = work / "audio_tfopt_fp32.onnx"
        optimize_model(str(src), model_type="swin", opt_level=1).save_model_to_file(str(fused))
        quantize_dynamic(str(fused), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    out["dyn_tfopt"] = dst
    return out


def session(path: Path, spin: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/insight-bench/onnx"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/insight-bench/quant"))
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--only", nargs="*", default=None, help="variant names to time")
    args = ap.parse_args()

    src = args.onnx_dir / "audio_model.onnx"
    calib = features(16, seed=7)
    test = features(8, seed=99)
    print(f"mel range {test.min():.1f}..{test.max():.1f} dB", flush=True)
    built = build(src, args.work, calib)
    paths: dict[str, tuple[Path, bool]] = {
        "fp32": (src, True),
        "dyn_int8 (current)": (args.onnx_dir / "audio_model_quantized.onnx", True),
        "dyn_int8 nospin": (args.onnx_dir / "audio_model_quantized.onnx", False),
        "dyn_int8 (2nd session)": (args.onnx_dir / "audio_model_quantized.onnx", True),
    }
    for name, p in built.items():
        paths[name] = (p, True)
    if args.only:
        paths = {k: v for k, v in paths.items() if k in args.only or k == "fp32"}

    sessions = {k: session(p, spin) for k, (p, spin) in paths.items()}
    ref = sessions["fp32"].run(None, {"input_features": test})[0]
    cos = {
        k: float(cosines(s.run(None, {"input_features": test})[0], ref).min())
        for k, s in sessions.items()
    }
    times: dict[tuple[str, int], list[float]] = {(k, b): [] for k in sessions for b in (1, 4)}

    def runner(s: ort.InferenceSession) -> Callable[[np.ndarray], object]:
        return lambda x: s.run(None, {"input_features": x})

    runs = {k: runner(s) for k, s in sessions.items()}
    for b in (1, 4):
        x = test[:b]
        for f in runs.values():  # warm-up
            f(x)
        for _ in range(args.reps):
            for k, f in runs.items():
                time.sleep(0.03)  # let the previous session's spinning workers go idle
                t0 = time.perf_counter()
                f(x)
                times[(k, b)].append((time.perf_counter() - t0) * 1000)
    base = (
        statistics.median(times[("dyn_int8 (current)", 1)]) if "dyn_int8 (current)" in runs else 0
    )
    print("\n| variant | b1 ms | b4 ms | vs dyn int8 (b1) | min cos vs fp32 (8 win) | MB |")
    print("|---|---|---|---|---|---|")
    for k, (p, _) in paths.items():
        m1 = statistics.median(times[(k, 1)])
        m4 = statistics.median(times[(k, 4)])
        sp = f"{base / m1:.2f}x" if base else "-"
        mb = p.stat().st_size / 1e6
        print(f"| {k} | {m1:.1f} | {m4:.1f} | {sp} | {cos[k]:.5f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
