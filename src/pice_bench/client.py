"""One timed, streamed chat completion against any OpenAI-compatible server.

Time starts just before the request is sent; TTFT is the arrival of the first non-empty
content delta (what a user would see first); latency is the arrival of ``[DONE]`` (or the end
of the stream). Failures are recorded, not raised: under load a 503 is a measurement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

# Called with (seconds since the request was sent, content delta); returning False closes the
# stream early, which the server sees as a disconnect and stops generating.
OnDelta = Callable[[float, str], bool]


@dataclass
class StreamResult:
    text: str = ""
    ttft_s: float | None = None
    latency_s: float = 0.0
    usage: dict[str, Any] | None = None
    # The gateway's ``pice`` extension object, from the last chunk that carried one.
    extension: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: str | None = None
    chunks: int = 0
    deltas: list[tuple[float, str]] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return int((self.usage or {}).get("prompt_tokens") or 0)

    @property
    def completion_tokens(self) -> int:
        return int((self.usage or {}).get("completion_tokens") or 0)


def chat_body(
    model: str,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    stop: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A streamed chat request that reports usage in its last chunk; ``extra``: more fields."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if stop:
        body["stop"] = stop
    return body | (extra or {})


def _error_message(status: int, body: bytes) -> str:
    try:
        error = json.loads(body).get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:200]
    return f"HTTP {status}: {message}"


def _apply_chunk(
    result: StreamResult, chunk: dict[str, Any], elapsed: float, on_delta: OnDelta | None
) -> bool:
    """Fold one chunk into ``result``; False when ``on_delta`` asked to stop."""
    keep_going = True
    result.chunks += 1
    if isinstance(chunk.get("pice"), dict):
        result.extension = chunk["pice"]
    if chunk.get("usage"):
        result.usage = chunk["usage"]
    for choice in chunk.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            if result.ttft_s is None:
                result.ttft_s = elapsed
            result.text += content
            result.deltas.append((elapsed, content))
            if on_delta is not None and not on_delta(elapsed, content):
                keep_going = False
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    return keep_going


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    on_delta: OnDelta | None = None,
) -> StreamResult:
    """POST ``body`` to ``url`` (a ``/chat/completions`` URL) and time the streamed answer."""
    result = StreamResult()
    start = time.perf_counter()
    try:
        async with aconnect_sse(client, "POST", url, json=body, headers=headers or {}) as source:
            response = source.response
            if response.status_code >= 400:
                result.error = _error_message(response.status_code, await response.aread())
            else:
                async for event in source.aiter_sse():
                    if event.data == "[DONE]":
                        break
                    chunk = json.loads(event.data)
                    if "error" in chunk:
                        err = chunk["error"]
                        result.error = "stream error: " + str(
                            err.get("message") if isinstance(err, dict) else err
                        )
                        break
                    if not _apply_chunk(result, chunk, time.perf_counter() - start, on_delta):
                        result.finish_reason = result.finish_reason or "closed"
                        break
    except (httpx.HTTPError, SSEError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.latency_s = time.perf_counter() - start
    return result
