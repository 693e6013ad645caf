"""An in-process transport for the gateway's upstream clients: no socket, no server thread.

Handlers are written as for httpx's ``MockTransport`` (an ``httpx.Request`` in, an
``httpx.Response`` out, sync or async), because httpx's models are a convenient way to build
a response; the gateway's :class:`~pice_gateway.upstream_http.UpstreamClient` reads it through
the same :class:`~pice_gateway.upstream_http.Transport` seam as the real aiohttp transport. A
handler (or its body) raises aiohttp's exceptions to stand for a failed connection, as the
real transport would.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
from multidict import CIMultiDict

from pice_gateway.upstream_http import UpstreamClient, UpstreamResponse

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.headers: Mapping[str, str] = CIMultiDict(response.headers.multi_items())

    @property
    def status(self) -> int:
        return self._response.status_code

    async def read(self) -> bytes:
        return await self._response.aread()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()


class HandlerTransport:
    """Answers every request with ``handler``; records nothing itself (handlers do)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.closed = False

    @contextlib.asynccontextmanager
    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[UpstreamResponse]:
        request = httpx.Request(method, url, headers=dict(headers), content=body or b"")
        answer = self._handler(request)
        response = await answer if inspect.isawaitable(answer) else answer
        try:
            yield _Response(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        self.closed = True


def mock_client(
    handler: Handler, base_url: str = "http://cloud/v1/", name: str = "cloud"
) -> UpstreamClient:
    """An upstream client whose every request ``handler`` answers in process."""
    return UpstreamClient(name, base_url, HandlerTransport(handler))
