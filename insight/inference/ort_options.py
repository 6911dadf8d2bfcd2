"""One ONNX Runtime thread pool for every session of the process (see ``session_options``).

Its own module, below the model code: the exporter's checks and the graph tools build
sessions too, and importing it from ``clap.py`` made the inference modules import each other.
"""

from __future__ import annotations

import logging
import threading

import onnxruntime as ort

log = logging.getLogger("insight.inference.clap")  # where this warning was always logged

_pool_threads: int | None = None
_pool_lock = threading.Lock()


def session_options(threads: int | None) -> ort.SessionOptions:
    """Options for every ONNX Runtime session of the process: all run on one shared thread pool.

    Per-session pools keep their threads spinning after a run and steal the cores from the
    next run of another session (text after audio, a second model after a swap): measured on
    2 cores, int8 audio right after an fp32 run took 83 ms with per-session pools and 38 ms
    with one shared pool. The first call sets the size (``threads``, 0 = ORT's default of one
    per physical core) for the life of the process; ``None`` (tools such as the exporter's
    checks) takes the pool as it is. Once it is set, ONNX Runtime refuses sessions with their
    own pool, so every session here must come from these options.
    """
    _shared_thread_pool(threads)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.use_per_session_threads = False
    return opts


def _shared_thread_pool(threads: int | None) -> None:
    global _pool_threads
    with _pool_lock:
        if _pool_threads is None:
            ort.set_global_thread_pool_sizes(threads or 0, 1)
            _pool_threads = threads or 0
        elif threads is not None and threads != _pool_threads:
            log.warning(
                "onnx_threads_fixed asked=%d using=%d hint='restart to change the thread count'",
                threads,
                _pool_threads,
            )


# ONNX Runtime fusions the text tower runs faster without. ``SkipLayerNormFusion`` turns each
# residual Add + LayerNormalization into one SkipLayerNormalization, whose CPU kernel took
# 4-5 ms per call at batch 32 where Add + LayerNormalization take ~0.8 ms (RoBERTa-base, 1
# thread, AMD EPYC): 2-10 % of the tower (BENCHMARKS.md, "Session 6: the text tower"). fp32
# outputs stay within float rounding of the fused graph (int8: cosine 0.9999, the dynamic
# quantizer rounding those differences).
TEXT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def text_session_kwargs() -> dict[str, list[str]]:
    """Extra ``InferenceSession`` arguments for a text tower."""
    return {"disabled_optimizers": list(TEXT_DISABLED_OPTIMIZERS)}
