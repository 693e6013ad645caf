"""Background tasks of an app's lifespan, stopped at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]], logger: logging.Logger) -> None:
    """Cancel ``tasks`` and wait for them; one that had already failed is logged by its name,
    not raised, so the shutdown that follows (closing clients, stopping an engine) still runs."""
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.error("%s had failed: %r", task.get_name(), outcome)
