"""``insight models list | download | load``: model management from the command line.

``add_commands(models_sub)`` takes the sub-parsers of the ``models`` command.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from insight.config import Settings, load_settings
from insight.errors import InsightError


def _human(n: int | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def cmd_list(args: argparse.Namespace) -> int:
    """Known and cached models with their local status (no network needed)."""
    from insight.inference.model_dir import local_model_id
    from insight.models.download import cached_model_dir, cached_model_ids, cached_size
    from insight.models.registry import KNOWN_MODELS

    settings = load_settings()
    local = local_model_id(settings.model)
    configured = local or settings.model.name
    ids = [m.model_id for m in KNOWN_MODELS]
    ids += [i for i in cached_model_ids(settings.models_dir) if i not in ids]
    print(f"{'model':<34} {'status':<15} {'size':>9}  note")
    for model_id in ids:
        if model_id == local:
            continue  # listed below, as the local folder it is
        path = cached_model_dir(model_id, settings.models_dir)
        status = "downloaded" if path else "not_downloaded"
        if model_id == configured:
            status += " *"
        known = next((m for m in KNOWN_MODELS if m.model_id == model_id), None)
        note = known.note if known and known.note else (known.description if known else "")
        size = cached_size(model_id, settings.models_dir) if path else None
        print(f"{model_id:<34} {status:<15} {_human(size):>9}  {note}")
    if local is not None and settings.model.path is not None:
        folder = settings.model.path
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        status = ("local" if folder.is_dir() else "missing") + (" *" if local == configured else "")
        print(f"{local:<34} {status:<15} {_human(size):>9}  INSIGHT_MODEL__PATH={folder}")
    print("* = configured model (INSIGHT_MODEL__PATH, else INSIGHT_MODEL__NAME)")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Download and verify a model into the cache, with a progress line."""
    from insight.models.download import DownloadJob, fetch_model, hub_error
    from insight.models.registry import known_model, validate_model_id

    settings = load_settings()
    model_id = args.model_id or settings.model.name
    endpoint = (args.endpoint or settings.model.hub_endpoint or _default_endpoint()).rstrip("/")
    try:
        validate_model_id(model_id)
    except InsightError as exc:
        print(f"insight: {exc.message}", file=sys.stderr)
        return 2
    known = known_model(model_id)
    if known is not None and not known.onnx_on_hub:
        print(f"insight: {known.note}", file=sys.stderr)
        return 2
    job = DownloadJob(download_id="cli", model_id=model_id)
    done = threading.Event()
    printer = threading.Thread(target=_progress_printer, args=(job, done), daemon=True)
    printer.start()
    try:
        path = fetch_model(
            model_id,
            settings.models_dir,
            endpoint=endpoint,
            quantized=settings.model.quantized is True,
            job=job,
        )
    except BaseException as exc:
        done.set()
        printer.join()
        err = hub_error(exc, model_id, endpoint)
        print(f"\ninsight: {err.message}", file=sys.stderr)
        return 1
    done.set()
    printer.join()
    print(f"\n{model_id} downloaded and verified: {path}")
    return 0


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _progress_printer(job: Any, done: threading.Event) -> None:
    started = time.monotonic()
    while not done.wait(0.5):
        p = job.progress()
        total = p.total_bytes or 0
        pct = f"{100 * p.bytes_downloaded / total:5.1f}%" if total else "  ?  "
        rate = p.bytes_downloaded / max(time.monotonic() - started, 1e-3)
        sys.stderr.write(
            f"\r{pct} {_human(p.bytes_downloaded)}/{_human(total)} "
            f"{_human(int(rate))}/s {p.current_file or '':<40}"
        )
        sys.stderr.flush()


def cmd_load(args: argparse.Namespace) -> int:
    """Ask a running instance to load a downloaded model (a staged switch; ``--now``: at once)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    settings: Settings = load_settings()
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    base = args.url or f"http://{host}:{settings.server.port}/api/v1"
    url = f"{base}/models/{urllib.parse.quote(args.model_id, safe='/')}/load"
    data = json.dumps({"switch": "now"}).encode() if args.now else b""
    headers = {"Accept": "application/json"}
    if data:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    if settings.server.api_key:
        req.add_header("Authorization", f"Bearer {settings.server.api_key.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", exc.reason)
        print(f"insight: {detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"insight is not reachable at {url}: {exc}", file=sys.stderr)
        return 1
    print(body.get("message", body))
    return 0


def add_commands(models_sub: Any) -> None:
    """Add ``list``, ``download`` and ``load`` to the ``models`` sub-parsers."""
    p = models_sub.add_parser("list", help="known and cached models (offline)")
    p.set_defaults(func=cmd_list)
    p = models_sub.add_parser("download", help="download and verify a model from the hub")
    p.add_argument("model_id", nargs="?", help="hub id (default INSIGHT_MODEL__NAME)")
    p.add_argument("--endpoint", help="hub URL (default INSIGHT_MODEL__HUB_ENDPOINT/HF_ENDPOINT)")
    p.set_defaults(func=cmd_download)
    p = models_sub.add_parser("load", help="switch a running instance to a downloaded model")
    p.add_argument("model_id")
    p.add_argument(
        "--now",
        action="store_true",
        help="switch at once (default: the loaded model serves until the new space is filled)",
    )
    p.add_argument("--url", help="API base (default http://<server>/api/v1)")
    p.set_defaults(func=cmd_load)
