"""``insight`` command line: serve, worker, bridge, status, models, scan, reembed, ma-bridge."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from insight.config import ConfigError, Settings, load_settings
from insight.logs import setup_logging


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "nats_url", None):
        overrides["nats"] = {"url": args.nats_url}
    settings = load_settings()
    if overrides:
        settings = settings.model_copy(
            update={"nats": settings.nats.model_copy(update=overrides["nats"])}
        )
    return settings


STORE_CONFLICT = 3  # another store serves the service on this bus (insight.bus.lease)


def use_system_malloc() -> None:
    """Re-execute this command once with ``PYTHONMALLOC=malloc`` (unless PYTHONMALLOC is set).

    A long-running server should give memory back after a burst: pymalloc keeps each 1 MiB
    arena alive for any object left in it, so every round of four 14 MB JSON bodies left RSS
    ~5 MB higher (8 rounds: +19 %); with the C allocator (and the bridge's ``malloc_trim``)
    RSS stays flat. ``PYTHONMALLOC=pymalloc`` keeps Python's own allocator. glibc gives each
    thread that allocates at once an arena of its own (up to 8 per core), and freed memory in
    an arena is stranded there: under load the body-parsing threads left RSS 11 % higher after
    the same attack, so arenas are capped at 2 (``MALLOC_ARENA_MAX``, unless it is set).
    """
    if os.environ.get("PYTHONMALLOC") or not sys.platform.startswith("linux"):
        return
    os.environ["PYTHONMALLOC"] = "malloc"
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def cmd_run(worker: bool, bridge: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from insight.bus.lease import StoreConflict
        from insight.runtime import run_until_signal

        if getattr(args, "command_line", False):
            use_system_malloc()
        settings = _settings(args)
        setup_logging(settings.log_level)
        if getattr(args, "role", "all") == "inference":  # insight.scale.node
            from insight.scale.node import run_inference_node

            asyncio.run(run_inference_node(settings))
            return 0
        try:
            asyncio.run(run_until_signal(settings, worker=worker, bridge=bridge))
        except StoreConflict as exc:
            print(f"insight: {exc}", file=sys.stderr)
            return STORE_CONFLICT
        return 0

    return run


def cmd_status(args: argparse.Namespace) -> int:
    """Ask a running bridge for /status and print a short summary."""
    import urllib.request

    settings = _settings(args)
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    url = args.url or f"http://{host}:{settings.server.port}/api/v1/status"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if settings.server.api_key:
        req.add_header("Authorization", f"Bearer {settings.server.api_key.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = json.load(resp)
    except OSError as exc:
        print(f"insight is not reachable at {url}: {exc}", file=sys.stderr)
        return 1
    st = status["storage"]
    model = status.get("model") or {}
    print(
        f"health   {status['health']}  (version {status['version']}, "
        f"up {status['uptime_seconds']} s)"
    )
    print(f"model    {model.get('model_id', 'none')}  {model.get('device') or ''}")
    print(
        f"storage  {st['mode']} connected={st['connected']} tracks={st['total_tracks']} "
        f"text={st['text_collection_count']} audio={st['audio_collection_count']} "
        f"profiles={st['profile_count']}"
    )
    if status.get("message"):
        print(f"note     {status['message']}")
    return 0 if status["health"] == "healthy" else 2


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from insight.inference.export import export_clap

    out = export_clap(args.source, Path(args.out_dir), quantize=args.quantize)
    print(f"exported to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, worker, bridge, text in (
        ("serve", True, True, "embedded NATS (unless --nats-url) + worker + HTTP bridge"),
        ("worker", True, False, "bus consumers and service only"),
        ("bridge", False, True, "HTTP bridge only"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--nats-url", help="join this NATS instead of starting one")
        if name == "worker":
            p.add_argument(
                "--role",
                choices=["all", "inference"],
                default="all",
                help="inference: embedding work only (no store, watcher, history or lease)",
            )
        p.set_defaults(func=cmd_run(worker, bridge))

    p = sub.add_parser("status", help="summarise a running instance's health")
    p.add_argument("--url", help="status URL (default from INSIGHT_SERVER__*)")
    p.set_defaults(func=cmd_status)

    models = sub.add_parser("models", help="model management").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser("export", help="convert a transformers CLAP checkpoint to ONNX")
    p.add_argument("source", help="hub id or local folder of a transformers ClapModel")
    p.add_argument("out_dir")
    p.add_argument("--quantize", choices=["int8"], default=None)
    p.set_defaults(func=cmd_export)

    from insight.integrations.cli import add_commands as add_integration_commands
    from insight.models.cli import add_commands as add_model_commands
    from insight.watcher.cli import add_commands as add_watcher_commands

    add_model_commands(models)
    add_watcher_commands(sub)
    add_integration_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = argv is None  # a real process, not a call from Python
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"insight: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
