"""Load-time rewrites of a CLAP audio graph we did not export (the hub's legacy-exporter files).

The same changes our exporter makes on the torch side (export_patches.py), made on the ONNX
graph instead: Swin shift + window partition (and their inverses) and patch merging as one
token ``Gather`` each, the bicubic stretch as a 4-tap gather, zero ``Pad`` nodes dropped,
spelled-out layer norms fused into ``LayerNormalization`` (our export has them as such).
Every number a rewrite needs is read off ONNX Runtime running the original graph; the result
is checked against the original on fixed inputs by :mod:`.verify` before anyone uses it.
The text tower gets one rewrite of its own, :mod:`.last_token` (its last layer on token 0).
"""

from __future__ import annotations

from insight.inference.graph_rewrite.rewrite import REWRITER_VERSION, RewriteReport, rewrite_graph

__all__ = ["REWRITER_VERSION", "RewriteReport", "rewrite_graph"]
