"""CLAP inference on ONNX Runtime: audio front-end, text, sessions, micro-batching pool.

Runtime modules never import torch or transformers; only ``export`` does, lazily.
"""
