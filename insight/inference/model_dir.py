"""Where the files of a model folder are: our layout or the Xenova hub layout."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.errors import InsightError, NotReady

if TYPE_CHECKING:
    from insight.config import ModelSettings

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


def local_model_id(m: ModelSettings) -> str | None:
    """The model id of the ``INSIGHT_MODEL__PATH`` folder (None without one).

    ``INSIGHT_MODEL__NAME`` when it is set too (the user names the folder), else
    ``local/<folder name>``: never the default hub id, which the folder may well not be.
    The hub id keeps its own state (the hub cache), so both can be loaded in turn.
    """
    if m.path is None:
        return None
    if "name" in m.model_fields_set:
        return m.name
    from insight.models.registry import validate_model_id

    name = m.path.resolve().name or "model"
    try:
        return validate_model_id(f"local/{name}")
    except InsightError:  # e.g. spaces in the folder name: a loadable id all the same
        clean = re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-._") or "model"
        return f"local/{re.sub(r'[.]{2,}', '.', clean)}"


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
