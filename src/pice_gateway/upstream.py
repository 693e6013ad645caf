"""Requests to upstreams (the cloud and the edge agents), with their failures translated here.

Every failure becomes a :mod:`pice.errors` type in this module (or, for the connection itself,
in :mod:`pice_gateway.upstream_http`), so handlers and the progressive pipeline only ever see
the one tree:

    a timeout (connect, pool, read)  -> UpstreamTimeoutError (503)
    any other transport failure      -> UpstreamError (503)
    upstream 400/404/422 (cloud)     -> InvalidRequestError, its message/param/code kept
    upstream 413 / 429               -> PayloadTooLargeError / RateLimitError
    any other upstream error status  -> UpstreamError (503, Retry-After kept)
    malformed SSE or JSON            -> UpstreamError

Streams are always opened with ``async with open_stream(...)`` so the connection is released,
and closed early (which an upstream sees as a disconnect and cancels its work) when the
consumer stops iterating.

Every upstream client is made by :func:`upstream_client`: an
:class:`~pice_gateway.upstream_http.UpstreamClient` over aiohttp's connection pool and C HTTP
parser (docs/operations.md "Overhead" has what each step cost and saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from pice.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    PiceError,
    RateLimitError,
    UpstreamError,
)
from pice_gateway.sse_decode import SseDataDecoder
from pice_gateway.upstream_http import (
    TRANSPORT_ERRORS,
    AiohttpTransport,
    HeaderHook,
    PoolLimits,
    Timeouts,
    UpstreamClient,
    UpstreamResponse,
    transport_error,
)

_DONE = "[DONE]"
_JSON = "application/json"
# How long a finished stream's remaining bytes may take to arrive before its connection is
# closed rather than reused (an upstream that sends ``[DONE]`` ends its body right after).
DRAIN_SECONDS = 1.0


def upstream_client(
    name: str,
    base_url: str,
    *,
    timeouts: Timeouts,
    limits: PoolLimits,
    headers: Mapping[str, str],
    hooks: Sequence[HeaderHook],
) -> UpstreamClient:
    """A pooled client to one upstream (closed by its ``aclose``); ``name`` names it in errors."""
    return UpstreamClient(
        name, base_url, AiohttpTransport(limits, timeouts), headers=headers, hooks=hooks
    )


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:200], None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", "")), error.get("param"), error.get("code")
    if isinstance(error, str):
        return error, None, None
    return str(payload)[:200], None, None


def error_from_status(
    upstream: str, status: int, body: bytes, headers: Mapping[str, str]
) -> PiceError:
    """The PICE error for an upstream's error response."""
    message, param, code = _error_fields(body)
    if status in (400, 422):
        return InvalidRequestError(
            message or f"{upstream} refused the request.", param=param, code=code
        )
    if status == 413:
        return PayloadTooLargeError(message or "Request too large for the upstream.")
    try:
        retry_after = max(1, int(headers.get("retry-after", "1")))
    except ValueError:
        retry_after = 1
    if status == 429:
        return RateLimitError(
            message or f"{upstream} is rate limiting.", code=code, retry_after=retry_after
        )
    # 401/403/404 from an upstream are the gateway's misconfiguration, not the client's fault.
    return UpstreamError(
        f"{upstream} answered {status}: {message}".rstrip(": "), retry_after=retry_after
    )


@contextlib.asynccontextmanager
async def translated(upstream: str) -> AsyncIterator[None]:
    """Failures while reading a body inside the block become PICE errors: the connection's (a
    read timeout, a dropped connection) as in :func:`~pice_gateway.upstream_http.transport_error`,
    a malformed payload (JSON, SSE) as an ``UpstreamError``."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise transport_error(upstream, exc) from exc
    except ValueError as exc:
        raise UpstreamError(f"{upstream} sent a malformed response: {exc}") from exc


@contextlib.asynccontextmanager
async def open_stream(
    client: UpstreamClient, path: str, payload: dict[str, Any]
) -> AsyncIterator[UpstreamResponse]:
    """POST ``payload`` and yield the streaming response once its status is known to be OK.

    An error status is raised as a PICE error before the caller sees the body; leaving the
    block closes the connection whether or not the body was read to the end.
    """
    async with client.open("POST", path, orjson.dumps(payload), content_type=_JSON) as response:
        if response.status >= 400:
            async with translated(client.name):
                body = await response.read()
            raise error_from_status(client.name, response.status, body, response.headers)
        yield response


async def json_events(
    response: UpstreamResponse, upstream: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects of an SSE response's ``data:`` events, up to ``[DONE]``."""
    async with contextlib.aclosing(json_event_batches(response, upstream)) as batches:
        async for batch in batches:
            for event in batch:
                yield event


async def json_event_batches(
    response: UpstreamResponse, upstream: str
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Like :func:`json_events`, but every event that one read of the body brought at once.

    A relay that writes a batch as one message sends the client the same bytes with one write
    instead of one per event; nothing waits for a batch to fill (it is whatever had arrived).

    After ``[DONE]`` the rest of the body (normally just its end, already in flight) is read,
    for at most :data:`DRAIN_SECONDS`, so that the connection goes back to its pool: closing it
    instead cost a new TCP connection per streamed request (seen in the gateway's profile,
    docs/operations.md "Overhead").
    """
    async with translated(upstream):
        _check_event_stream(response)
        decoder = SseDataDecoder()
        chunks = response.chunks()
        async for chunk in chunks:
            batch: list[dict[str, Any]] = []
            for data in decoder.feed(chunk):
                if data == _DONE:
                    if batch:
                        yield batch
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DRAIN_SECONDS):
                            async for _ in chunks:
                                pass
                    return
                if data:
                    batch.append(_json_event(data))
            if batch:
                yield batch


def _check_event_stream(response: UpstreamResponse) -> None:
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise ValueError(f"expected Content-Type text/event-stream, got {content_type!r}")


def _json_event(data: str) -> dict[str, Any]:
    payload = orjson.loads(data)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {data[:80]!r}")
    return payload


async def _json_object(client: UpstreamClient, response: UpstreamResponse) -> dict[str, Any]:
    async with translated(client.name):
        body = await response.read()
        if response.status >= 400:
            raise error_from_status(client.name, response.status, body, response.headers)
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        return payload


async def get_json(client: UpstreamClient, path: str) -> dict[str, Any]:
    """GET ``path`` and return its JSON object, errors translated."""
    async with client.open("GET", path) as response:
        return await _json_object(client, response)


async def post_json(client: UpstreamClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload`` and return the JSON object answered, errors translated."""
    async with client.open("POST", path, orjson.dumps(payload), content_type=_JSON) as response:
        return await _json_object(client, response)
