"""Model files from the Hugging Face hub, cached under the data dir."""

from __future__ import annotations

from pathlib import Path

HUB_FILES = ("onnx/text_model.onnx", "onnx/audio_model.onnx", "tokenizer.json")


def cache_dir(models_dir: Path) -> Path:
    return models_dir / "hub"


def cached_model_dir(model_id: str, models_dir: Path) -> Path | None:
    """The local snapshot of ``model_id`` if it was downloaded completely, else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(
            snapshot_download(
                model_id, cache_dir=cache_dir(models_dir), local_files_only=True
            )
        )
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path
