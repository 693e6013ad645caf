"""``pice gateway``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway", help="run the OpenAI-compatible progressive inference gateway"
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file")
    parser.add_argument("--host", default=None, help="bind address (overrides the config)")
    parser.add_argument("--port", type=int, default=None, help="port (overrides the config)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pice.logs import configure_logging
    from pice.tracing_factory import log_filters
    from pice_gateway.app import create_app
    from pice_gateway.settings import load_settings

    overrides = {
        key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None
    }
    settings = load_settings(args.config, **overrides)
    # Every log line of a request names it (``[pice-…]``; ``-`` outside requests), as text
    # or JSON; uvicorn's own lines go through the same handler (no log_config of its own).
    configure_logging(settings.log_format, args.log_level.upper(), log_filters(settings.tracing))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=args.log_level.lower(),
        # Streams hold connections open; a slow shutdown must not wait on them forever.
        timeout_graceful_shutdown=5,
    )
    return 0
