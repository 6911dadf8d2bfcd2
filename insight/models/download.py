"""Model files from the Hugging Face hub, cached and verified under the data dir.

Layout under ``models_dir`` (``<data_dir>/models``):

- ``hub/``: a ``huggingface_hub`` cache (``models--owner--name/{blobs,snapshots,refs}``);
- ``manifests/owner__name.json``: written only after every file of a download was checked
  (size, and sha256 where the hub lists one). A model counts as downloaded only with its
  manifest and every listed file present at its listed size, so a truncated or half-finished
  download never does.

Downloads run in a thread (``hf_hub_download`` per file); progress and cancellation go through a
``tqdm`` class that ``huggingface_hub`` updates per chunk. ``huggingface_hub`` resumes a file
with HTTP ranges when the connection drops mid-file (5 tries); files finished by an earlier,
failed or cancelled attempt are kept and not fetched again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.std import tqdm as std_tqdm

from insight.errors import BadRequest, Conflict, InsightError, NotFound, NotReady
from insight.models.registry import validate_model_id, wanted_files
from insight.schemas import DownloadProgress, DownloadStatus

log = logging.getLogger("insight.download")

HUB_FILES = ("onnx/text_model.onnx", "onnx/audio_model.onnx", "tokenizer.json")
KEEP_FINISHED_S = 3600.0
HASH_CHUNK = 1 << 20


def cache_dir(models_dir: Path) -> Path:
    return models_dir / "hub"


def manifest_path(model_id: str, models_dir: Path) -> Path:
    return models_dir / "manifests" / (validate_model_id(model_id).replace("/", "__") + ".json")


def repo_cache_dir(model_id: str, models_dir: Path) -> Path:
    return cache_dir(models_dir) / ("models--" + validate_model_id(model_id).replace("/", "--"))


def read_manifest(model_id: str, models_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(manifest_path(model_id, models_dir).read_text())
    except (OSError, ValueError, BadRequest):
        return None
    return data if isinstance(data, dict) else None


def cached_model_dir(model_id: str, models_dir: Path) -> Path | None:
    """The verified local snapshot of ``model_id``, or None (missing, partial or truncated)."""
    manifest = read_manifest(model_id, models_dir)
    if manifest is None:
        return None
    root = Path(manifest.get("snapshot", ""))
    if not root.is_absolute():
        root = models_dir / root
    for entry in manifest.get("files", []):
        try:
            if (root / entry["path"]).stat().st_size != int(entry["size"]):
                return None
        except (OSError, KeyError, TypeError, ValueError):
            return None
    return root if root.is_dir() else None


def cached_size(model_id: str, models_dir: Path) -> int | None:
    manifest = read_manifest(model_id, models_dir)
    if manifest is None:
        return None
    return sum(int(e.get("size", 0)) for e in manifest.get("files", []))


def cached_model_ids(models_dir: Path) -> list[str]:
    """Ids of every model with a manifest (verified or not; see ``cached_model_dir``)."""
    folder = models_dir / "manifests"
    if not folder.is_dir():
        return []
    return sorted(p.stem.replace("__", "/", 1) for p in folder.glob("*.json"))


def delete_cached(model_id: str, models_dir: Path) -> bool:
    """Remove a model's manifest and hub cache folder; False when there was nothing."""
    manifest, repo = manifest_path(model_id, models_dir), repo_cache_dir(model_id, models_dir)
    existed = manifest.exists() or repo.exists()
    manifest.unlink(missing_ok=True)
    if repo.exists():
        shutil.rmtree(repo)
    return existed


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --- one download ---------------------------------------------------------------------------


class Cancelled(Exception):
    """Raised inside the download thread when the user cancels."""


@dataclass
class DownloadJob:
    download_id: str
    model_id: str
    status: DownloadStatus = DownloadStatus.PENDING
    bytes_done: int = 0  # finished files
    bytes_current: int = 0  # the file being fetched
    total: int | None = None
    error: str | None = None
    current_file: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.status in (DownloadStatus.PENDING, DownloadStatus.DOWNLOADING)

    def progress(self) -> DownloadProgress:
        return DownloadProgress(
            download_id=self.download_id,
            model_id=self.model_id,
            status=self.status,
            bytes_downloaded=self.bytes_done + max(self.bytes_current, 0),
            total_bytes=self.total,
            error=self.error,
            started_at=int(self.started_at),
            current_file=self.current_file,
            completed_at=int(self.finished_at) if self.finished_at else None,
        )


def _progress_class(job: DownloadJob) -> type[std_tqdm]:
    """A silent tqdm that reports bytes to ``job`` and stops the transfer on cancel."""

    class Progress(std_tqdm):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)
            job.bytes_current = int(kwargs.get("initial") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            if job.cancel.is_set():
                raise Cancelled("download cancelled")
            job.bytes_current += int(n or 0)
            return None

    return Progress


def hub_error(exc: BaseException, model_id: str, endpoint: str) -> InsightError:
    """A message a person can act on for anything the hub client raised."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, InsightError):
        return exc
    if isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError):
        return NotFound(f"model {model_id} was not found on the hub at {endpoint}")
    if isinstance(exc, EntryNotFoundError):
        return NotFound(f"a file of {model_id} is missing on the hub: {exc}")
    if isinstance(exc, HfHubHTTPError):
        return NotReady(f"the hub at {endpoint} refused the download of {model_id}: {exc}")
    text = f"{type(exc).__name__}: {exc}"
    if "connect" in text.lower() or isinstance(exc, OSError | TimeoutError):
        return NotReady(
            f"cannot download {model_id}: the hub at {endpoint} is unreachable ({text}). "
            "Check the network or INSIGHT_MODEL__HUB_ENDPOINT; a cached model or "
            "INSIGHT_MODEL__PATH works offline.",
            code="HUB_UNREACHABLE",
        )
    return NotReady(f"download of {model_id} failed: {text}")


def fetch_model(
    model_id: str,
    models_dir: Path,
    *,
    endpoint: str,
    quantized: bool = False,
    job: DownloadJob | None = None,
    on_file: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Download and verify ``model_id`` into the cache (blocking); returns the snapshot folder."""
    from huggingface_hub import HfApi, hf_hub_download

    job = job or DownloadJob(download_id="local", model_id=model_id)
    validate_model_id(model_id)
    info = HfApi(endpoint=endpoint).model_info(model_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    files = wanted_files(list(siblings), quantized)
    if not any(f.endswith(".onnx") for f in files):
        raise BadRequest(
            f"{model_id} has no ONNX towers (text_model.onnx, audio_model.onnx) on the hub: "
            f"export it with `insight models export {model_id} DIR` and set INSIGHT_MODEL__PATH",
            code="NO_ONNX",
        )
    missing = [t for t in ("text_model", "audio_model") if not any(t in f for f in files)]
    if missing or "tokenizer.json" not in files:
        raise BadRequest(f"{model_id} on the hub lacks {', '.join(missing) or 'tokenizer.json'}")
    sizes = {f: siblings[f].size for f in files}
    job.total = sum(s or 0 for s in sizes.values()) or None
    job.status = DownloadStatus.DOWNLOADING
    progress_cls = _progress_class(job)
    entries: list[dict[str, Any]] = []
    snapshot: Path | None = None
    for name in files:
        if job.cancel.is_set():
            raise Cancelled("download cancelled")
        job.current_file, job.bytes_current = name, 0
        path = Path(
            hf_hub_download(
                model_id,
                name,
                revision=info.sha,
                cache_dir=cache_dir(models_dir),
                endpoint=endpoint,
                tqdm_class=progress_cls,
            )
        )
        lfs = siblings[name].lfs
        entry = _verify(path, name, sizes[name], lfs.sha256 if lfs else None)
        entries.append(entry)
        job.bytes_done += entry["size"]
        job.bytes_current = 0
        if on_file is not None:
            on_file(name, job.bytes_done, job.total or 0)
        snapshot = path.parents[len(Path(name).parts) - 1]
    assert snapshot is not None
    manifest = {
        "model_id": model_id,
        "revision": info.sha,
        "snapshot": str(snapshot.relative_to(models_dir)),
        "files": entries,
        "downloaded_at": int(time.time()),
    }
    target = manifest_path(model_id, models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(target)
    job.current_file = None
    return snapshot


def _verify(path: Path, name: str, size: int | None, sha256: str | None) -> dict[str, Any]:
    """Check a downloaded file against the hub's listing; a bad blob is removed."""
    actual = path.stat().st_size
    problem = None
    if size is not None and actual != size:
        problem = f"{name} has {actual} bytes, the hub lists {size}"
    elif sha256 and sha256_of(path) != sha256:
        problem = f"{name} does not match its sha256 on the hub"
    if problem:
        with contextlib.suppress(OSError):
            path.resolve().unlink()
        with contextlib.suppress(OSError):
            path.unlink()
        raise NotReady(f"verification failed: {problem}; retry the download")
    return {"path": name, "size": actual, "sha256": sha256}


# --- manager ----------------------------------------------------------------------------------


class DownloadManager:
    """Background downloads, one per model at a time; progress kept an hour after the end."""

    def __init__(self, models_dir: Path, endpoint: str | None = None, quantized: bool = False):
        from huggingface_hub import constants

        self.models_dir = models_dir
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.quantized = quantized
        self.jobs: dict[str, DownloadJob] = {}

    def active_for(self, model_id: str) -> DownloadJob | None:
        return next((j for j in self.jobs.values() if j.model_id == model_id and j.active), None)

    def last_for(self, model_id: str) -> DownloadJob | None:
        jobs = [j for j in self.jobs.values() if j.model_id == model_id]
        return max(jobs, key=lambda j: j.started_at) if jobs else None

    def start(self, model_id: str) -> DownloadJob:
        validate_model_id(model_id)
        if self.active_for(model_id) is not None:
            raise Conflict(f"model {model_id} is already being downloaded")
        self._purge()
        job = DownloadJob(download_id=str(uuid.uuid4()), model_id=model_id)
        self.jobs[job.download_id] = job
        job.task = asyncio.create_task(self._run(job), name=f"download-{model_id}")
        return job

    async def _run(self, job: DownloadJob) -> None:
        log.info("download_started id=%s model=%s", job.download_id, job.model_id)
        try:
            await asyncio.to_thread(
                fetch_model,
                job.model_id,
                self.models_dir,
                endpoint=self.endpoint,
                quantized=self.quantized,
                job=job,
            )
        except Cancelled:
            job.status = DownloadStatus.CANCELLED
            log.info("download_cancelled model=%s", job.model_id)
        except BaseException as exc:
            job.status = DownloadStatus.FAILED
            job.error = hub_error(exc, job.model_id, self.endpoint).message
            log.warning("download_failed model=%s error=%s", job.model_id, job.error)
            if isinstance(exc, asyncio.CancelledError):
                job.cancel.set()
                raise
        else:
            job.status = DownloadStatus.COMPLETED
            log.info("download_completed model=%s bytes=%d", job.model_id, job.bytes_done)
        finally:
            job.finished_at = time.time()
            job.bytes_current = 0

    async def wait(self, download_id: str) -> DownloadJob:
        job = self.get(download_id)
        if job.task is not None:
            await asyncio.shield(job.task)
        return job

    def get(self, download_id: str) -> DownloadJob:
        job = self.jobs.get(download_id)
        if job is None:
            raise NotFound(f"download {download_id} not found")
        return job

    def cancel(self, download_id: str) -> DownloadJob:
        job = self.get(download_id)
        if job.active:
            job.cancel.set()
        return job

    def list(self) -> list[DownloadJob]:
        self._purge()
        return sorted(self.jobs.values(), key=lambda j: j.started_at)

    def _purge(self) -> None:
        cutoff = time.time() - KEEP_FINISHED_S
        for key, job in list(self.jobs.items()):
            if not job.active and (job.finished_at or 0) < cutoff:
                del self.jobs[key]

    async def close(self) -> None:
        tasks = [j.task for j in self.jobs.values() if j.task is not None and j.active]
        for job in self.jobs.values():
            job.cancel.set()
        await asyncio.gather(*tasks, return_exceptions=True)
