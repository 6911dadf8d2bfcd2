"""The text tower against transformers, same weights and threads (not a test).

Full-size random clap-htsat-unfused weights (RoBERTa-base text tower), the work folder of
bench/inference.py (built when missing). Candidates, each as the service loads it
(``ClapModel.load`` then ``embed_text``): our export fp32 and int8, the hub-layout folder
(legacy exporter) as found (fp32) and as the service runs it by default (cache, int8 text);
plus the same ONNX files in a plain session with all of ONNX Runtime's default fusions, to
show what the text session's own options change. Batch 1 and batch 32 track sentences.

With ``--threads 1`` the figure is the calling thread's CPU time (ONNX Runtime and torch run
the whole call on it, so other load on the box does not count), candidates alternating call
by call; with more threads it is wall clock, interleaved in blocks of 3 (bench/common.timeit).
``--profile`` prints ONNX Runtime's per-op-type totals of each ONNX candidate first.

    .venv/bin/python bench/text_cpu.py [--work-dir DIR] [--threads N] [--reps N] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, timeit, track_texts
from bench.inference import build_graphs
from bench.tower_cpu import cpu_ms
from insight.config import ModelSettings
from insight.inference.clap import ClapModel, session_options


def plain_session(path: Path) -> Any:
    """``path`` with ONNX Runtime's default optimisations and none of the text session's."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), session_options(None), providers=["CPUExecutionProvider"]
    )


def text_session(path: Path) -> Any:
    """``path`` with the options the service gives its text session."""
    import onnxruntime as ort

    from insight.inference.ort_options import text_session_kwargs

    return ort.InferenceSession(
        str(path),
        session_options(None),
        providers=["CPUExecutionProvider"],
        **text_session_kwargs(),
    )


def session_fn(sess: Any, model: ClapModel, texts: list[str]) -> Callable[[], Any]:
    ids, mask = model.tokenizer.encode_batch(texts)
    feed = {i.name: (mask if "attention" in i.name else ids) for i in sess.get_inputs()}
    return lambda: sess.run(None, feed)[0]


def op_profile(path: Path, model: ClapModel, texts: list[str], runs: int = 3) -> list[str]:
    """ONNX Runtime's kernel time per op type (ms per run), the text session's options."""
    import onnxruntime as ort

    from insight.inference.ort_options import text_session_kwargs

    opts = session_options(None)
    opts.enable_profiling = True
    opts.profile_file_prefix = "/tmp/insight-text-profile"
    sess = ort.InferenceSession(
        str(path), opts, providers=["CPUExecutionProvider"], **text_session_kwargs()
    )
    fn = session_fn(sess, model, texts)
    fn()
    for _ in range(runs):
        fn()
    trace = Path(sess.end_profiling())
    total: collections.Counter[str] = collections.Counter()
    for ev in json.loads(trace.read_text()):
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            total[ev["args"]["op_name"]] += ev["dur"]
    trace.unlink()
    all_us = sum(total.values())
    return [
        f"{op} {us / (runs + 1) / 1000:.1f} ms ({100 * us / all_us:.0f}%)"
        for op, us in total.most_common(8)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--before",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run this text graph (e.g. one saved before a rewrite), the service's options",
    )
    args = ap.parse_args()
    load_before = os.getloadavg()
    session_options(args.threads)
    import torch
    from transformers import ClapModel as HFClap
    from transformers import ClapProcessor

    torch.set_num_threads(args.threads)
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    src, ours, hub = build_graphs(work)

    def load(folder: Path, quantized: bool | None, cache: bool = False) -> ClapModel:
        settings = ModelSettings(threads=args.threads, quantized=quantized)
        return ClapModel.load(folder, settings, "bench", work / "graphs" if cache else None)

    models = {
        "hub default (as served)": load(hub, None, cache=True),
        "hub as found fp32": load(hub, False),
        "hub fp32 from the cache (rewritten)": load(hub, False, cache=True),
        "ours fp32": load(ours, False),
        "ours int8": load(ours, True),
    }
    hf = HFClap.from_pretrained(src).eval()
    tokenizer = ClapProcessor.from_pretrained(src).tokenizer
    texts = track_texts(32)

    def eager(batch: list[str]) -> np.ndarray:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            return np.asarray(hf.get_text_features(**enc).pooler_output.numpy())

    results: dict[str, Any] = {}
    for label, batch in (("b1", texts[:1]), ("b32", texts)):
        fns: dict[str, Callable[[], Any]] = {"transformers eager": partial(eager, batch)}
        for name, m in models.items():
            q = "int8" if m.text_quantized else "fp32"
            fns[f"{name} [{q}]"] = partial(m.embed_text, batch)
            fns[f"{name} [{q}], ORT default fusions"] = session_fn(
                plain_session(m.towers.text), m, batch
            )
            if args.profile:
                print(f"# profile {label} {name} [{q}]: {op_profile(m.towers.text, m, batch)}")
        any_model = next(iter(models.values()))
        for spec in args.before:
            name, _, path = spec.partition("=")
            fns[f"{name} (before)"] = session_fn(text_session(Path(path)), any_model, batch)
        if args.threads == 1:
            res = {k: v["median"] for k, v in cpu_ms(fns, args.reps).items()}
        else:
            res = timeit(fns, args.reps)
        ref = eager(batch)
        ref = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
        base = res["transformers eager"]
        print(f"\n## text {label} ({len(batch)} texts), {args.threads} thread(s)")
        print("| candidate | ms | x transformers | min cos vs transformers |")
        print("|---|---|---|---|")
        for name, ms in res.items():
            out = np.asarray(fns[name]())
            out = out / np.linalg.norm(out, axis=-1, keepdims=True)
            cos = float(np.min(np.sum(out * ref, axis=-1)))
            print(f"| {name} | {ms:.1f} | {base / ms:.2f} | {cos:.6f} |")
            results[f"{label} {name}"] = {"ms": round(ms, 1), "x": round(base / ms, 2)}
    measure = "thread CPU time" if args.threads == 1 else "wall clock"
    print(
        json.dumps(
            {
                "bench": "text_cpu",
                "threads": args.threads,
                "measure": measure,
                "machine": machine(load_before),
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
