"""Known CLAP models on the Hugging Face hub, and the rule for what a model id may look like."""

from __future__ import annotations

import re
from dataclasses import dataclass

from insight.errors import BadRequest

MB = 1024 * 1024

# owner/name, each part starting with a letter or digit, as the hub allows; nothing else.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# Files fetched for a model, by where the hub keeps them (Xenova layout first, then flat).
TOWERS = ("text_model", "audio_model")
SIDE_FILES = (
    "tokenizer.json",
    "config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class KnownModel:
    model_id: str
    name: str
    description: str
    estimated_size_bytes: int
    license: str
    recommended: bool
    onnx_on_hub: bool = True
    note: str | None = None


def export_note(model_id: str) -> str:
    return (
        f"No ONNX export of {model_id} on the hub: run `insight models export {model_id} DIR` "
        "(needs the `export` extra) and set INSIGHT_MODEL__PATH=DIR."
    )


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel(
        model_id="Xenova/clap-htsat-unfused",
        name="CLAP HTSAT (Unfused)",
        description="General-purpose CLAP model (ONNX export by Xenova). Default; good balance "
        "of speed and quality for music similarity.",
        estimated_size_bytes=630 * MB,
        license="apache-2.0",
        recommended=True,
    ),
    KnownModel(
        model_id="laion/larger_clap_music",
        name="CLAP Music (Large)",
        description="Larger CLAP model trained for music. Better quality, slower inference.",
        estimated_size_bytes=780 * MB,
        license="apache-2.0",
        recommended=True,
        onnx_on_hub=False,
        note=export_note("laion/larger_clap_music"),
    ),
    KnownModel(
        model_id="laion/clap-htsat-unfused",
        name="CLAP HTSAT (LAION)",
        description="Original LAION CLAP checkpoint (transformers weights).",
        estimated_size_bytes=630 * MB,
        license="apache-2.0",
        recommended=False,
        onnx_on_hub=False,
        note=export_note("laion/clap-htsat-unfused"),
    ),
)


def known_model(model_id: str) -> KnownModel | None:
    return next((m for m in KNOWN_MODELS if m.model_id == model_id), None)


def validate_model_id(model_id: str) -> str:
    """``owner/name`` or ``BadRequest``: nothing that could leave the cache folder."""
    parts = model_id.split("/")
    if (
        not _ID.match(model_id)
        or any(p in (".", "..") or p.startswith(".") or ".." in p for p in parts)
        or "--" in model_id
    ):
        raise BadRequest(
            f"invalid model id {model_id!r}: expected a hub id 'owner/name' "
            "(letters, digits, '.', '_', '-'; no '..', no '--')",
            code="INVALID_MODEL_ID",
        )
    return model_id


def wanted_files(repo_files: list[str], quantized: bool) -> list[str]:
    """The files of a hub repo that make an insight model folder (towers, tokenizer, configs)."""
    have = set(repo_files)
    out: list[str] = []
    for tower in TOWERS:
        names = [f"{tower}_quantized.onnx", f"{tower}.onnx"] if quantized else [f"{tower}.onnx"]
        for name in names:
            hit = next((p for p in (f"onnx/{name}", name) if p in have), None)
            if hit is not None:
                out.append(hit)
                break
    out += [f for f in SIDE_FILES if f in have]
    return out
