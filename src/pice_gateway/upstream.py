"""Requests to upstreams (the cloud and the edge agents), with their failures translated here.

Every httpx exception and every upstream error status becomes a :mod:`pice.errors` type in this
module and nowhere else, so handlers and the progressive pipeline only ever see the one tree:

    httpx.TimeoutException           -> UpstreamTimeoutError (503)
    other httpx.HTTPError            -> UpstreamError (503)
    upstream 400/404/422 (cloud)     -> InvalidRequestError, its message/param/code kept
    upstream 413 / 429               -> PayloadTooLargeError / RateLimitError
    any other upstream error status  -> UpstreamError (503, Retry-After kept)
    malformed SSE or JSON            -> UpstreamError

Streams are always opened with ``async with client.stream(...)`` so the connection is released,
and closed early (which an upstream sees as a disconnect and cancels its work) when the
consumer stops iterating.

Every upstream client is made by :func:`upstream_client`: httpx's API (base URL, timeouts,
event hooks, the tests' mock transports) over aiohttp's connection pool and C HTTP parser
(``httpx-aiohttp``). The gateway's own profile put about two thirds of the pass-through's
upstream cost in httpcore and h11; aiohttp's transport cut the instructions per request by
28% non-streamed and 25% streamed (docs/operations.md "Overhead").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport
from httpx_sse import SSEError

from pice.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    PiceError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from pice_gateway.sse_decode import SseDataDecoder

_DONE = "[DONE]"
# How long a finished stream's remaining bytes may take to arrive before its connection is
# closed rather than reused (an upstream that sends ``[DONE]`` ends its body right after).
DRAIN_SECONDS = 1.0


def upstream_client(
    base_url: str,
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    headers: dict[str, str],
    event_hooks: dict[str, list[Any]],
) -> httpx.AsyncClient:
    """A pooled client to one upstream (closed by its ``aclose``).

    The pool is aiohttp's, sized and expired by ``limits``; ``timeout``'s connect, read and
    pool limits apply (aiohttp has no write timeout: a body is sent whole before reading).
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=limits,
        headers=headers,
        event_hooks=event_hooks,
        transport=AiohttpTransport(limits=limits),
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


def error_from_status(upstream: str, status: int, body: bytes, headers: httpx.Headers) -> PiceError:
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


def error_from_exception(upstream: str, exc: Exception) -> PiceError:
    """The PICE error for an exception raised while talking to ``upstream``."""
    if isinstance(exc, PiceError):
        return exc
    if isinstance(exc, httpx.HTTPError) and isinstance(exc.__cause__, Exception):
        # The aiohttp transport re-raises aiohttp's errors as httpx's, coarsely (a refused or
        # dropped connection becomes ``ConnectTimeout``): what happened is the cause.
        return _from_transport(upstream, exc.__cause__)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{upstream} timed out ({type(exc).__name__}).")
    if isinstance(exc, httpx.HTTPError | SSEError):
        return UpstreamError(f"{upstream} failed: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, ValueError):  # malformed JSON in a body or an event
        return UpstreamError(f"{upstream} sent a malformed response: {exc}")
    raise exc


def _from_transport(upstream: str, cause: Exception) -> PiceError:
    # aiohttp's timeouts are ``TimeoutError``s; every other transport error is a failure.
    if isinstance(cause, TimeoutError):
        return UpstreamTimeoutError(f"{upstream} timed out ({type(cause).__name__}).")
    return UpstreamError(f"{upstream} failed: {type(cause).__name__}: {cause}".rstrip(": "))


@contextlib.asynccontextmanager
async def translated(upstream: str) -> AsyncIterator[None]:
    """Turn httpx (and malformed-payload) errors raised inside the block into PICE errors."""
    try:
        yield
    except (httpx.HTTPError, SSEError, ValueError) as exc:
        raise error_from_exception(upstream, exc) from exc


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, upstream: str, path: str, payload: dict[str, Any]
) -> AsyncIterator[httpx.Response]:
    """POST ``payload`` and yield the streaming response once its status is known to be OK.

    An error status is raised as a PICE error before the caller sees the body; leaving the
    block closes the connection whether or not the body was read to the end.
    """
    async with translated(upstream), client.stream("POST", path, json=payload) as response:
        if response.status_code >= 400:
            body = await response.aread()
            raise error_from_status(upstream, response.status_code, body, response.headers)
        yield response


async def json_events(
    response: httpx.Response, upstream: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects of an SSE response's ``data:`` events, up to ``[DONE]``."""
    async with contextlib.aclosing(json_event_batches(response, upstream)) as batches:
        async for batch in batches:
            for event in batch:
                yield event


async def json_event_batches(
    response: httpx.Response, upstream: str
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
        chunks = response.aiter_bytes()
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


def _check_event_stream(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(f"expected Content-Type text/event-stream, got {content_type!r}")


def _json_event(data: str) -> dict[str, Any]:
    payload = orjson.loads(data)
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {data[:80]!r}")
    return payload


def _json_object(upstream: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise error_from_status(upstream, response.status_code, response.content, response.headers)
    body = orjson.loads(response.content)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


async def get_json(client: httpx.AsyncClient, upstream: str, path: str) -> dict[str, Any]:
    """GET ``path`` and return its JSON object, errors translated."""
    async with translated(upstream):
        return _json_object(upstream, await client.get(path))


async def post_json(
    client: httpx.AsyncClient, upstream: str, path: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """POST ``payload`` and return the JSON object answered, errors translated."""
    async with translated(upstream):
        return _json_object(upstream, await client.post(path, json=payload))
