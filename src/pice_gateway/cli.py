"""``pice gateway``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
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
    from pice.http.serve import serve_app
    from pice.logs import configure_logging
    from pice.settings_check import settings_warnings
    from pice.tracing_factory import log_filters
    from pice_gateway.app import create_app
    from pice_gateway.settings import GatewaySettings, load_settings

    settings = load_settings(
        args.config, host=args.host, port=args.port, allow_insecure=args.insecure
    )
    # Every log line of a request names it (``[pice-…]``; ``-`` outside requests), as text
    # or JSON; uvicorn's own lines go through the same handler (no log_config of its own).
    # Configured before the app, so a refused insecure bind is logged in the same format.
    configure_logging(settings.log_format, args.log_level.upper(), log_filters(settings.tracing))
    for warning in settings_warnings(GatewaySettings, args.config, os.environ):
        logger.warning("%s", warning)
    return serve_app(
        lambda: create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        logger=logger,
    )
