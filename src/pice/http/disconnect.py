"""Cancel a non-streaming handler's work when its client disconnects.

Streaming responses are cancelled by sse-starlette when the client goes: it cancels the task
iterating the event generator, whose ``finally`` blocks tear the work down. A plain JSON
response is not: Starlette keeps running the handler until it returns. ``until_disconnect``
races the work against the ASGI ``http.disconnect`` message and cancels the work when that
comes first (the idea of vLLM's ``with_cancellation``); the work's own ``finally`` /
``async with`` blocks then cancel what it started (an engine job, upstream streams). The request
body must already be read (FastAPI has parsed it before a handler runs), so the only message
left to receive is the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from pice.errors import PiceError

T = TypeVar("T")


class ClientDisconnected(PiceError):
    """The client went away; nobody will read the response."""

    status_code = 499
    error_type = "client_closed_request"


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; cancel it and raise :class:`ClientDisconnected` if the client leaves first."""
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected("The client disconnected.")
    return task.result()
