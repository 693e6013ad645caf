"""Serve an app built by a factory under uvicorn, as ``pice gateway`` and ``pice edge serve`` do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pice.errors import InsecureBindError


def serve_app(
    build: Callable[[], Any], *, host: str, port: int, log_level: str, logger: logging.Logger
) -> int:
    """Build the app and serve it until stopped; 2 when it refuses an insecure bind.

    uvicorn gets no log config of its own, so its lines go through the handler the caller's
    ``configure_logging`` installed (request ids, text or JSON). Streams hold connections open:
    a slow shutdown must not wait on them forever.
    """
    import uvicorn

    try:
        app = build()
    except InsecureBindError as exc:
        logger.error("%s", exc)
        return 2
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    return 0
