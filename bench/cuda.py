"""One-shot CUDA execution-provider timing of our CLAP pipeline (not a test; CI never runs it).

Needs a CUDA GPU, ``onnxruntime-gpu`` (it replaces ``onnxruntime``: same module), torch with
CUDA and transformers. Builds the full-size clap-htsat-unfused architecture with random weights
(``insight.testing.hf_clap``), exports it with our exporter (fp32), then times, with medians of
interleaved reps after one warm-up call each:

* ours, ``ModelSettings(enable_cuda=True)`` (ORT CUDA EP) vs ours on the ORT CPU EP (all cores)
  vs transformers on torch CUDA (``get_audio_features`` / ``get_text_features`` on the GPU);
* audio end to end (PCM s16 44.1 kHz stereo → decode → soxr 48 kHz → windows → mel → tower →
  track vector; transformers gets the same 48 kHz windows through ``ClapFeatureExtractor``):
  one 10 s window and a 4-minute track (24 windows);
* the audio tower alone on precomputed log-mel features (batch 1 and 24);
* text, batch 1 and 32 (tokenize + tower);

and cosines of CUDA EP vs CPU EP (and vs torch CUDA). Prints one JSON line last.

    python bench/cuda.py [--work-dir DIR] [--prepare-only] [--reps N] [--small] [--allow-no-cuda]

``--small`` (the small random test architecture) with ``--allow-no-cuda`` is a CPU dry run of
this script's logic; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import full_size_source, timeit, to_48k_mono, tone_pcm, track_texts


def prepare(work: Path, small: bool) -> dict[str, Any]:
    """Random transformers CLAP folder + our ONNX export of it (both kept if current)."""
    from insight.inference.export import export_clap, is_current_export
    from insight.testing.hf_clap import build_hf_clap

    t0 = time.perf_counter()
    src = work / "hf"
    if not small:
        full_size_source(work)  # RoBERTa's tokenizer, as the hub's folders have
    elif not (src / "config.json").exists():
        build_hf_clap(src, small=small, seed=0)
    build_s = time.perf_counter() - t0
    onnx_dir = work / "onnx"
    if not is_current_export(onnx_dir):
        export_clap(src, onnx_dir, quantize="int8")
    report = json.loads((onnx_dir / "export.json").read_text())
    report["build_s"] = round(build_s, 1)
    print(f"prepare: {report}", flush=True)
    return report


def cos_rows(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=-1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-cuda"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--small", action="store_true", help="small test architecture (dry run)")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--allow-no-cuda", action="store_true", help="go on without the CUDA EP")
    ap.add_argument(
        "--graphs",
        type=Path,
        help="ONNX folder to time instead of an export (bench/onnx_skeleton.py fill: weights "
        "not the torch model's, so no cosine against torch)",
    )
    args = ap.parse_args()
    from insight.inference.clap import session_options

    session_options(args.threads)  # size the process's ONNX pool before any export check
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"bench": "cuda"}

    def finish(code: int = 0) -> None:
        line = json.dumps(summary)
        print(line, flush=True)
        out = os.environ.get("OUT")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            Path(out, "cuda.json").write_text(line + "\n")
        sys.exit(code)

    try:
        if args.graphs is None:
            summary["export"] = prepare(work, args.small)
        else:
            summary["export"] = f"random graphs {args.graphs}: no cosine against torch"
            full_size_source(work)
    except Exception as exc:
        traceback.print_exc()
        summary["error"] = f"prepare failed: {exc!r}"
        finish(1)
    if args.prepare_only:
        finish(0)

    import onnxruntime as ort
    import torch
    from transformers import ClapModel as HFClap
    from transformers import ClapProcessor

    from insight.config import ModelSettings
    from insight.inference.audio import split_windows
    from insight.inference.clap import ClapModel

    has_gpu = torch.cuda.is_available()
    machine = {
        "gpu": torch.cuda.get_device_name(0) if has_gpu else None,
        "cores": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "ort_available_providers": ort.get_available_providers(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "torch_tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    summary["machine"] = machine
    print(f"machine: {machine}", flush=True)
    src, onnx_dir = work / "hf", args.graphs or work / "onnx"
    same_weights = args.graphs is None
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    cuda = ClapModel.load(onnx_dir, ModelSettings(enable_cuda=True, threads=args.threads), "cuda")
    try:
        cuda.warmup()
    except Exception as exc:
        traceback.print_exc()
        summary["error"] = f"CUDA-EP model warm-up failed: {exc!r}"
        finish(1)
    used = {
        "text": cuda._text.get().get_providers(),
        "audio": cuda._audio.get().get_providers(),
    }
    summary["cuda_model_providers"] = used
    summary["cuda_model_device"] = cuda.device
    # quantized unset: fp32 towers on a GPU even where int8 ones are there and accurate
    summary["cuda_towers"] = {"text": cuda.towers.text.name, "audio": cuda.towers.audio.name}
    summary["cuda_load_warmup_s"] = round(time.perf_counter() - t0, 2)
    print(f"CUDA-EP model: device={cuda.device} providers={used}", flush=True)
    if "CUDAExecutionProvider" not in used["audio"] and not args.allow_no_cuda:
        summary["error"] = "CUDAExecutionProvider did not load (see stderr above)"
        finish(1)

    cpu = ClapModel.load(onnx_dir, ModelSettings(threads=args.threads), "cpu")
    cpu.warmup()
    summary["cpu_model_providers"] = cpu._audio.get().get_providers()

    dev = "cuda" if has_gpu else "cpu"
    hf = HFClap.from_pretrained(src).eval().to(dev)
    proc = ClapProcessor.from_pretrained(src)
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}

    def pcm(seconds: float) -> bytes:
        return tone_pcm(seconds, rng)

    def ours(model: ClapModel, data: bytes) -> np.ndarray:
        from insight.inference.model import embed_audio

        return embed_audio(model, to_48k_mono(data), 10.0, 10.0)[0]

    def torch_audio(feats: Any) -> np.ndarray:
        with torch.no_grad():
            out = hf.get_audio_features(input_features=feats.to(dev))
        out = out if hasattr(out, "shape") else out.pooler_output
        return out.float().cpu().numpy()

    def theirs(data: bytes) -> np.ndarray:
        mono = to_48k_mono(data)
        windows = list(split_windows(mono, 480_000, 480_000))
        feats = proc.feature_extractor(windows, sampling_rate=48_000, return_tensors="pt")
        v = torch_audio(feats["input_features"])
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        m = v.mean(0)
        return m / np.linalg.norm(m)

    for label, seconds in (("audio_10s", 10.0), ("audio_4min", 240.0)):
        data = pcm(seconds)
        r: dict[str, Any] = timeit(
            {
                "ours_cuda_ep_ms": partial(ours, cuda, data),
                "ours_cpu_ep_ms": partial(ours, cpu, data),
                "torch_cuda_ms": partial(theirs, data),
            },
            args.reps,
        )
        vc, vp, vt = ours(cuda, data), ours(cpu, data), theirs(data)
        r["cos_cuda_vs_cpu"] = float(vc @ vp)
        r["cos_cuda_vs_torch"] = float(vc @ vt) if same_weights else None
        results[label] = r
        print(f"{label}: {r}", flush=True)

    # Audio tower alone on our log-mel features (front-end excluded).
    mono = to_48k_mono(pcm(240.0))
    windows = split_windows(mono, 480_000, 480_000)
    t0 = time.perf_counter()
    feats24 = cuda.mel(windows)
    results["frontend_mel_24_windows_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for label, feats in (("audio_tower_b1", feats24[:1]), ("audio_tower_b24", feats24)):
        tf = torch.from_numpy(np.ascontiguousarray(feats))
        r = timeit(
            {
                "ours_cuda_ep_ms": partial(cuda.embed_features, feats),
                "ours_cpu_ep_ms": partial(cpu.embed_features, feats),
                "torch_cuda_ms": partial(torch_audio, tf),
            },
            args.reps,
        )
        ec, ep = cuda.embed_features(feats), cpu.embed_features(feats)
        r["cos_cuda_vs_cpu_min"] = cos_rows(ec, ep)
        r["cos_cuda_vs_torch_min"] = cos_rows(ec, torch_audio(tf)) if same_weights else None
        results[label] = r
        print(f"{label}: {r}", flush=True)

    texts = track_texts()

    def hf_text(batch: list[str]) -> np.ndarray:
        enc = proc.tokenizer(
            batch, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        with torch.no_grad():
            out = hf.get_text_features(**{k: v.to(dev) for k, v in enc.items()})
        out = out if hasattr(out, "shape") else out.pooler_output
        return out.float().cpu().numpy()

    for label, batch, reps in (
        ("text_b1", texts[:1], 3 * args.reps),
        ("text_b32", texts, args.reps),
    ):
        r = timeit(
            {
                "ours_cuda_ep_ms": partial(cuda.embed_text, batch),
                "ours_cpu_ep_ms": partial(cpu.embed_text, batch),
                "torch_cuda_ms": partial(hf_text, batch),
            },
            reps,
        )
        ec = cuda.embed_text(batch)
        r["cos_cuda_vs_cpu_min"] = cos_rows(ec, cpu.embed_text(batch))
        r["cos_cuda_vs_torch_min"] = cos_rows(ec, hf_text(batch)) if same_weights else None
        results[label] = r
        print(f"{label}: {r}", flush=True)

    if has_gpu:
        summary["torch_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    summary["results"] = results
    print(
        f"\n{'case':<18}{'ORT CUDA EP':>13}{'ORT CPU EP':>13}{'torch CUDA':>13}"
        f"{'CPU/CUDA':>10}{'cos CUDA/CPU':>14}"
    )
    for label, r in results.items():
        if not isinstance(r, dict):
            continue
        c, p, t = r["ours_cuda_ep_ms"], r["ours_cpu_ep_ms"], r["torch_cuda_ms"]
        cc = r.get("cos_cuda_vs_cpu", r.get("cos_cuda_vs_cpu_min"))
        print(f"{label:<18}{c:>11.2f}ms{p:>11.2f}ms{t:>11.2f}ms{p / c:>10.2f}{cc:>14.6f}")
    finish(0)


if __name__ == "__main__":
    main()
