"""The tasks of one request's work: started while open, cancelled together, failures reported.

A task that raises must end its request, not die unseen and leave the client waiting: a
:class:`~pice.errors.PiceError` goes to ``on_error`` as it is, anything else (a bug) is logged
with its traceback and reported as an internal error, whose message names only its type.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pice.errors import PiceError

logger = logging.getLogger(__name__)

Job = Coroutine[Any, Any, None]


class TaskSet:
    def __init__(self, on_error: Callable[[PiceError], None], *, name: str) -> None:
        self._on_error = on_error
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, job: Job) -> None:
        """Run ``job`` as a task; once closed, drop it unstarted."""
        if self._closed:
            job.close()
            return
        task = asyncio.create_task(self._guard(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before its first step never awaited ``job``: close it, or Python
        # warns that it was never awaited (a no-op for a job that ran to its end).
        task.add_done_callback(lambda _: job.close())

    def close(self) -> None:
        """Start nothing more (a job failing while being cancelled must not start another)."""
        self._closed = True

    async def aclose(self) -> None:
        """Close, then cancel every task and wait until all have ended."""
        self.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, job: Job) -> None:
        try:
            await job
        except PiceError as err:
            self._on_error(err)
        except Exception as exc:
            logger.exception("%s failed", self._name)
            self._on_error(PiceError(f"internal error: {type(exc).__name__}"))
