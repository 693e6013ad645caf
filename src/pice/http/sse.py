"""The one SSE encoder: sse-starlette with keep-alive pings and OpenAI's stream conventions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from pice.errors import PiceError

# Proxies drop connections that stay silent; a sketch can take longer than that before the
# first token, so a comment ping goes out at least this often.
PING_SECONDS = 15
# A client that stops reading for this long is treated as gone.
SEND_TIMEOUT_SECONDS = 60.0

DONE = "[DONE]"
_END = b"\r\n\r\n"

logger = logging.getLogger(__name__)


class _EventStream(EventSourceResponse):
    """sse-starlette's response, where a client that stopped reading is a client gone.

    sse-starlette raises :class:`SendTimeoutError` out of the app when a send times out (after
    closing the event generator): the error handlers then logged an "unhandled error" with two
    tracebacks and tried to answer a 500 on a started response, and ``background`` (the stream's
    ``on_close``) never ran. Here it is logged as what it is and ``on_close`` still runs;
    uvicorn closes the connection.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.warning("client read nothing for %ss: stream dropped", self.send_timeout)
            if self.background is not None:
                await self.background()


# An event as sse-starlette sends it: bytes go out as they are.
Event = ServerSentEvent | bytes


def sse_json(payload: Any) -> bytes:
    """One ``data:`` event carrying ``payload`` as compact JSON, already encoded.

    orjson writes compact UTF-8 JSON, which never contains a line break, so the event is one
    ``data:`` line; encoding it
    here rather than through ``ServerSentEvent`` skips that class's line splitting on every
    streamed chunk (the pass-through's profile, docs/operations.md "Overhead"). The line ends
    are sse-starlette's own (CRLF), so the bytes are what it would have sent.
    """
    return b"data: " + orjson.dumps(payload) + _END


def sse_error(err: PiceError) -> bytes:
    """The in-stream error event: what a failure becomes after the first byte was sent."""
    return sse_json(err.to_body())


def sse_done() -> bytes:
    return b"data: " + DONE.encode() + _END


def sse_response(
    events: AsyncIterator[Event],
    *,
    on_close: Callable[[], Awaitable[None]] | Callable[[], None] | None = None,
    ping_seconds: float = PING_SECONDS,
    send_timeout: float = SEND_TIMEOUT_SECONDS,
) -> EventSourceResponse:
    """Stream ``events`` as ``text/event-stream`` with pings and a send timeout.

    When the client disconnects, sse-starlette cancels the task iterating ``events``; the
    generator's ``finally`` blocks are where upstream work is cancelled. A generator that never
    started (the client left before the first byte) has no ``finally`` to run, so work begun
    before the response was built is released by ``on_close``, which runs once the response
    ends however it ends. It must be safe to call after a normal finish.

    A client that reads slowly holds the generator back (each send waits for the socket to
    drain), so nothing piles up in the server; one that reads nothing for ``send_timeout``
    seconds is dropped and the generator closed.
    """
    return _EventStream(
        events,
        ping=ping_seconds,
        send_timeout=send_timeout,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=None if on_close is None else BackgroundTask(on_close),
    )
