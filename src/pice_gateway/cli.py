"""``pice gateway``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="run the OpenAI-compatible progressive inference gateway"
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file")
    parser.add_argument("--host", default=None, help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, default=None, help="port (overrides the config)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback address without API keys (logged as a WARNING)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pice.errors import InsecureBindError
    from pice_gateway.app import create_app
    from pice_gateway.request_id import install_log_request_ids
    from pice_gateway.settings import load_settings

    settings = load_settings(
        args.config, host=args.host, port=args.port, allow_insecure=args.insecure
    )
    # Every log line of a request names it (``[pice-…]``; ``[-]`` outside requests).
    install_log_request_ids()
    try:
        app = create_app(settings)
    except InsecureBindError as exc:
        logger.error("%s", exc)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        # Streams hold connections open; a slow shutdown must not wait on them forever.
        timeout_graceful_shutdown=5,
    )
    return 0
