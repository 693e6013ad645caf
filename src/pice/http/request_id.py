"""Request ids: one per HTTP request, from the client's ``x-request-id`` or generated.

:class:`RequestIdMiddleware` (pure ASGI, so streams are not buffered) takes the client's
``x-request-id`` when it is printable ASCII of at most 128 characters, otherwise makes one
(``pice-<hex>``); it puts the id on every response's headers (errors and streams too) and in a
context variable for the rest of the request. Everything downstream reads that variable:

- the gateway's chat handler, as the request id of the ``pice`` report and of the report
  observers;
- ``pice_gateway.request_id.propagate_request_id``, an httpx request hook on the cloud and edge
  clients, which sends it upstream as ``x-request-id`` (the edge's ``/v1/expand`` body carries
  it too), where the edge agent's own middleware takes it;
- :class:`pice.logs.RequestIdFilter`, which stamps log records with it (``%(request_id)s``).

Both the gateway and the edge agent install the middleware. Tasks started while handling a
request (edge dispatch, the response stream) copy the context when they are created, so they see
the id; the edge poller, started at start-up, sees ``-``.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
MAX_LENGTH = 128
# Outside a request (start-up, the edge poller).
NO_REQUEST = "-"

_current: contextvars.ContextVar[str] = contextvars.ContextVar(
    "pice_request_id", default=NO_REQUEST
)


def new_request_id() -> str:
    return f"pice-{uuid.uuid4().hex[:12]}"


def accepted(value: str | None) -> str | None:
    """``value`` when it is usable as a request id (printable ASCII, 1 to 128 chars), else None.

    Printable ASCII keeps ids safe to echo in a header and in a log line (no CR/LF injection).
    """
    if value is None or not 0 < len(value) <= MAX_LENGTH:
        return None
    if not all(" " < char <= "~" for char in value):
        return None
    return value


@contextlib.contextmanager
def bound_request_id(value: str | None) -> Iterator[None]:
    """``value`` (when usable, else a new id) as the current request id inside the block: for
    work that arrives by another way than an HTTP request (the edge's reverse channel)."""
    token = _current.set(accepted(value) or new_request_id())
    try:
        yield
    finally:
        _current.reset(token)


def current_request_id() -> str:
    """The id of the request being handled, or ``-`` outside one."""
    return _current.get()


class RequestIdMiddleware:
    """Sets the request id of each HTTP request and returns it in the ``x-request-id`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-request-id"
            ),
            None,
        )
        request_id = accepted(given) or new_request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = _current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
