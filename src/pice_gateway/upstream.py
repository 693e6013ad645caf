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
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from pice.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    PiceError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)

_DONE = "[DONE]"


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
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{upstream} timed out ({type(exc).__name__}).")
    if isinstance(exc, httpx.HTTPError | SSEError):
        return UpstreamError(f"{upstream} failed: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, ValueError):  # malformed JSON in a body or an event
        return UpstreamError(f"{upstream} sent a malformed response: {exc}")
    raise exc


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
    async with translated(upstream):
        async for event in EventSource(response).aiter_sse():
            if event.data == _DONE:
                return
            if not event.data:
                continue
            payload = json.loads(event.data)
            if not isinstance(payload, dict):
                raise ValueError(f"expected a JSON object, got {event.data[:80]!r}")
            yield payload


def _json_object(upstream: str, response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise error_from_status(upstream, response.status_code, response.content, response.headers)
    body = response.json()
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
