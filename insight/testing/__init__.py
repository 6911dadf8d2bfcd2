"""Test helpers that ship with the package (used by tests, benches and the CLI)."""

from insight.testing.tiny_clap import build_tiny_clap, build_tiny_tokenizer

__all__ = ["build_tiny_clap", "build_tiny_tokenizer"]
