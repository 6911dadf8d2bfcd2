"""Track metadata → one sentence, and the model's tokenizer with CLAP's padding rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from insight.errors import NotReady

DEFAULT_MAX_LENGTH = 77


def format_track_text(name: str, artists: list[str], album: str | None, genres: list[str]) -> str:
    """The original sidecar's ``format_track_metadata`` (mood is never set there)."""
    parts = [f"{', '.join(artists) if artists else 'Unknown Artist'} - {name}"]
    if album:
        parts.append(f"Album: {album}")
    if genres:
        parts.append(f"Genres: {', '.join(genres)}")
    return ". ".join(parts)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _find(root: Path, name: str) -> Path | None:
    for p in (root / name, root / "onnx" / name):
        if p.is_file():
            return p
    return None


class Tokenizer:
    """``tokenizers`` with the model's pad id, truncation that keeps ``</s>``, dynamic padding."""

    def __init__(
        self,
        tokenizer: HFTokenizer,
        pad_id: int,
        max_length: int = DEFAULT_MAX_LENGTH,
        suffix: str = "",
    ):
        self.pad_id = pad_id
        self.max_length = max_length
        self.suffix = suffix  # appended to every text (GPT-2 towers read their end token)
        tok = tokenizer
        tok.no_padding()
        # tokenizers reserves room for the special tokens the post-processor adds.
        tok.enable_truncation(max_length)
        self._tok = tok

    @classmethod
    def from_model_dir(cls, path: Path) -> Tokenizer:
        root = Path(path)
        tj = _find(root, "tokenizer.json")
        if tj is None:
            raise NotReady(f"tokenizer.json is missing in model folder {root}")
        tok = HFTokenizer.from_file(str(tj))
        cfg_path = _find(root, "config.json")
        cfg = _read_json(cfg_path) if cfg_path else {}
        text_cfg = cfg.get("text_config") or {}
        pad_id = cfg.get("pad_token_id", text_cfg.get("pad_token_id"))
        if pad_id is None:
            padding = _read_json(tj).get("padding") or {}
            pad_id = padding.get("pad_id")
        if pad_id is None:
            for token in ("<pad>", "[PAD]"):
                if (tid := tok.token_to_id(token)) is not None:
                    pad_id = tid
                    break
        max_length = int(cfg.get("max_text_length", DEFAULT_MAX_LENGTH))
        if (positions := text_cfg.get("max_position_embeddings")) is not None:
            # RoBERTa positions start after the pad id: 514 positions hold 512 tokens.
            max_length = min(max_length, int(positions) - 2)
        return cls(tok, int(pad_id or 0), max_length, str(cfg.get("text_suffix", "")))

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, int64 ``[B, T]``, T = the longest text of the batch."""
        encs = self._tok.encode_batch([t + self.suffix for t in texts], add_special_tokens=True)
        width = max((len(e.ids) for e in encs), default=0) or 1
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
        return ids, mask
