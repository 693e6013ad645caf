"""What the gateway's upstream calls carry of the request being handled: its id, and its trace
context when tracing is on (the id itself: :mod:`pice.http.request_id`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from pice.http.request_id import HEADER, NO_REQUEST, current_request_id
from pice.tracing import Tracing

RequestHook = Callable[[httpx.Request], Awaitable[None]]


async def propagate_request_id(request: httpx.Request) -> None:
    """An httpx request hook: send the current request id upstream (nothing outside a request)."""
    request_id = current_request_id()
    if request_id != NO_REQUEST:
        request.headers[HEADER] = request_id


def request_hooks(tracing: Tracing) -> list[RequestHook]:
    """The httpx request hooks of the cloud and edge clients: the request id, and ``traceparent``
    of the span current where the call is made (the sketch's, an edge job's) when tracing."""
    if not tracing.enabled:
        return [propagate_request_id]

    async def propagate_trace(request: httpx.Request) -> None:
        tracing.inject(request.headers)

    return [propagate_request_id, propagate_trace]
