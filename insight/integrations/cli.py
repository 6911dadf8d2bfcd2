"""``insight ma-bridge``: forward a Music Assistant server's events to the insight bus."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from insight.config import Settings, load_settings
from insight.logs import setup_logging

log = logging.getLogger("insight.ma")


def add_commands(sub: Any) -> None:
    """Add ``ma-bridge`` to the ``insight`` subcommands (``sub`` from add_subparsers)."""
    p = sub.add_parser(
        "ma-bridge",
        help="forward Music Assistant library/playback events to the bus",
        description="Follow a Music Assistant server's websocket API and publish its library "
        "and playback events to insight's JetStream subjects; backfill the library on "
        "connect and after every library sync.",
        allow_abbrev=False,  # "--ma-token" must not be taken for --ma-token-file
    )
    p.add_argument(
        "--ma-url",
        default=os.environ.get("MA_URL"),
        help="Music Assistant base or websocket URL, e.g. http://music-assistant:8095 (env MA_URL)",
    )
    p.add_argument(
        "--ma-token-file",
        default=os.environ.get("MA_TOKEN_FILE"),
        help="file holding the long-lived Music Assistant token (env MA_TOKEN_FILE); or set "
        "the token itself in env MA_TOKEN. Needed from MA schema 28 on; never on the "
        "command line, where ps shows it",
    )
    p.add_argument(
        "--ma-token",
        help="deprecated: the token on the command line is visible to every user in ps; "
        "use MA_TOKEN or --ma-token-file",
    )
    p.add_argument("--nats-url", help="NATS to publish to (default INSIGHT_NATS__URL)")
    p.add_argument(
        "--user-id",
        default=None,
        help="user id for favorites of MA's global favorite flag (default: the MA user the "
        "token belongs to, the same id MA puts in its play reports)",
    )
    p.add_argument("--page-size", type=int, default=500, help="tracks per backfill page")
    p.add_argument(
        "--no-initial-backfill",
        action="store_true",
        help="backfill only after a library sync or a worker's request, not on connect",
    )
    p.set_defaults(func=cmd_ma_bridge)


def cmd_ma_bridge(args: argparse.Namespace) -> int:
    settings = load_settings()
    setup_logging(settings.log_level)
    nats_url = args.nats_url or settings.nats.url
    if not args.ma_url:
        print("insight ma-bridge: --ma-url (or MA_URL) is required", file=sys.stderr)
        return 2
    if not nats_url:
        print("insight ma-bridge: --nats-url (or INSIGHT_NATS__URL) is required", file=sys.stderr)
        return 2
    if args.ma_token:
        print(
            "insight ma-bridge: warning: --ma-token shows the token to every user in ps; "
            "set MA_TOKEN or MA_TOKEN_FILE instead",
            file=sys.stderr,
        )
    try:
        token = args.ma_token or read_token(args.ma_token_file)
    except OSError as exc:
        print(f"insight ma-bridge: cannot read the token file: {exc}", file=sys.stderr)
        return 2
    from insight.integrations.ma_client import MAAuthError

    try:
        asyncio.run(run_ma_bridge(settings, nats_url, args, token))
    except MAAuthError as exc:
        print(
            f"insight ma-bridge: Music Assistant refused the connection: {exc}. Create a "
            "long-lived token in MA (settings → profile) and set MA_TOKEN or MA_TOKEN_FILE.",
            file=sys.stderr,
        )
        return 3
    return 0


def read_token(path: str | None) -> str | None:
    """The MA token: from the file when one is named, else env ``MA_TOKEN`` (None if neither)."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    return os.environ.get("MA_TOKEN") or None


async def run_ma_bridge(
    settings: Settings, nats_url: str, args: argparse.Namespace, token: str | None
) -> None:
    from insight.bus.connection import connect
    from insight.integrations.music_assistant import BridgeOptions, MusicAssistantBridge

    nc = await connect(nats_url, settings.nats, name="insight-ma-bridge")
    options = BridgeOptions(
        page_size=args.page_size,
        user_id=args.user_id,
        backfill_on_connect=not args.no_initial_backfill,
    )
    bridge = MusicAssistantBridge(args.ma_url, token, nc, options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, bridge.stop)
    try:
        await bridge.run()
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        log.info("ma_bridge_stopped stats=%s", bridge.stats)
