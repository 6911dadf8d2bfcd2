"""Where the files of a model folder are: our layout or the Xenova hub layout."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insight.errors import NotReady

log = logging.getLogger(__name__)

DEFAULT_DIM = 512


@dataclass(frozen=True)
class ModelFiles:
    root: Path
    text_model: Path
    audio_model: Path
    tokenizer: Path
    config: dict[str, Any]
    quantized: bool

    @property
    def dim(self) -> int:
        return int(self.config.get("projection_dim", DEFAULT_DIM))


def _first(root: Path, names: list[str]) -> Path | None:
    for name in names:
        for p in (root / name, root / "onnx" / name):
            if p.is_file():
                return p
    return None


def find_model_files(root: Path, quantized: bool = False) -> ModelFiles:
    """Resolve the towers, tokenizer and config; ``NotReady`` names the first missing file.

    With ``quantized``, ``*_quantized.onnx`` is used where present (per tower), else fp32.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotReady(f"model folder {root} does not exist")
    found: dict[str, Path] = {}
    used_q = quantized
    for tower in ("text_model", "audio_model"):
        names = [f"{tower}_quantized.onnx", f"{tower}.onnx"] if quantized else [f"{tower}.onnx"]
        p = _first(root, names)
        if p is None:
            raise NotReady(
                f"{tower}.onnx is missing in model folder {root} "
                f"(looked in {root} and {root / 'onnx'})"
            )
        if quantized and not p.name.endswith("_quantized.onnx"):
            used_q = False
            log.warning("quantized_model_missing tower=%s using=%s", tower, p.name)
        found[tower] = p
    tok = _first(root, ["tokenizer.json"])
    if tok is None:
        raise NotReady(f"tokenizer.json is missing in model folder {root}")
    cfg_path = _first(root, ["config.json"])
    config: dict[str, Any] = {}
    if cfg_path is not None:
        try:
            loaded = json.loads(cfg_path.read_text())
            config = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            raise NotReady(f"config.json in {root} is not valid JSON: {exc}") from exc
    return ModelFiles(root, found["text_model"], found["audio_model"], tok, config, used_q)
