"""The gateway's HTTP client to its upstreams (the cloud and the edge agents).

:class:`UpstreamClient` is one upstream: its base URL, the headers every call carries (a bearer
token), the hooks that add the current request's id and trace context, and a
:class:`Transport` that sends. :class:`AiohttpTransport` is the real transport (aiohttp's
connection pool and C HTTP parser); the tests pass an in-process one.

Why not httpx: its client layer (request and response objects, header merging, the cookie
jar, auth and redirect handling the gateway never uses) cost more CPU per pass-through request
than the gateway's own code, measured in docs/operations.md "Overhead". The transport seam is
the part of httpx's design that the gateway needs, and it is kept.

Every transport failure leaves this module as a :mod:`pice.errors` type: a timeout as
:class:`~pice.errors.UpstreamTimeoutError`, any other failure as
:class:`~pice.errors.UpstreamError`. Error *statuses* are the caller's to read
(:mod:`pice_gateway.upstream` maps them).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from pice.errors import PiceError, UpstreamError, UpstreamTimeoutError

# Adds headers to an outgoing call (the request id, ``traceparent``): called as the call is made.
HeaderHook = Callable[[MutableMapping[str, str]], None]


class UpstreamResponse(Protocol):
    """A response whose status and headers have arrived; its body is read on demand."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each chunk whatever one read of the connection brought."""
        ...


class Transport(Protocol):
    """Sends one request; leaving the context releases the connection (closing it when the
    body was not read to its end, which the upstream sees as a disconnect)."""

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> contextlib.AbstractAsyncContextManager[UpstreamResponse]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class PoolLimits:
    """How many connections an upstream client opens at once, and how long an idle one lives."""

    max_connections: int
    keepalive_seconds: float


@dataclass(frozen=True)
class Timeouts:
    """Seconds: ``connect`` to open a connection, ``pool`` to wait for a free one (a request
    that must wait and then open one has both: :func:`client_timeout`), ``read`` the longest
    silence tolerated between bytes. (aiohttp sends a body whole before reading, so there is no
    separate write timeout.)"""

    connect: float
    read: float
    pool: float


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for ``timeouts``. Its ``connect`` bounds acquiring a connection — the
    wait for a free one and a new one's set-up, together — so it is ``pool + connect``;
    ``sock_connect`` bounds the set-up alone. (With ``connect = pool`` a slow set-up was cut
    short at the pool's budget: 130 concurrent connects on a busy 2-core machine failed after
    0.5 s although ``connect`` allowed 60.)"""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.pool + timeouts.connect,
        sock_connect=timeouts.connect,
        sock_read=timeouts.read,
    )


def transport_error(upstream: str, exc: BaseException) -> PiceError:
    """The PICE error for a failure of the connection to ``upstream``."""
    # aiohttp's timeouts (connect, read, pool) are all ``TimeoutError``s as well.
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"{upstream} timed out ({type(exc).__name__}).")
    # What the socket said names the upstream's address: the logs' business, not a client's.
    return UpstreamError(f"{upstream} failed: {type(exc).__name__}", detail=str(exc) or None)


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()


class AiohttpTransport:
    """Requests over one aiohttp session: a pool of keep-alive connections, no cookie jar.

    The session is made on first use, inside the running event loop that will use it.
    """

    def __init__(self, limits: PoolLimits, timeouts: Timeouts) -> None:
        self._limits = limits
        self._timeout = client_timeout(timeouts)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            # A request that raced the close (a poll of an edge that just left): a failed
            # connection like any other, not aiohttp's RuntimeError, which nobody catches.
            raise aiohttp.ClientConnectionError("the client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                keepalive_timeout=self._limits.keepalive_seconds,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[UpstreamResponse]:
        async with self._client().request(
            method, url, headers=headers, data=body, allow_redirects=False
        ) as response:
            yield _AiohttpResponse(response)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()


# The exceptions a transport raises for a failed connection, timeouts included (aiohttp's are
# ``ClientError``s too); nothing else is caught: a timeout or an ``OSError`` of the caller's own
# code inside the block (the client's socket) is not the upstream's failure.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError,)


class UpstreamClient:
    """One upstream: its base URL, the headers and hooks every call gets, and its transport."""

    def __init__(
        self,
        name: str,
        base_url: str,
        transport: Transport,
        *,
        headers: Mapping[str, str] | None = None,
        hooks: Sequence[HeaderHook] = (),
    ) -> None:
        self.name = name
        self.base_url = base_url
        self._transport = transport
        self._headers = dict(headers or {})
        self._hooks = tuple(hooks)

    def url(self, path: str) -> str:
        """``path`` under the base URL, with or without a leading ``/`` (``chat/completions``
        under ``http://host/v1/``; ``/v1/expand`` under an edge at ``http://host/edge-1``)."""
        return _join(self.base_url, path)

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str | None = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send a request and yield its response, transport failures raised as PICE errors."""
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        for hook in self._hooks:
            hook(headers)
        try:
            async with self._transport.send(method, self.url(path), headers, body) as response:
                yield response
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@functools.lru_cache(maxsize=1024)
def _join(base_url: str, path: str) -> str:
    """A pure memo: the join is string work done once per (base, path) pair."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")
