"""The cloud upstream: its pooled client, and a streamed chat completion read as plain text.

The progressive path reads the cloud as a text source (the sketch, and the points no edge could
expand); the direct path (:mod:`pice_gateway.direct_path`) relays its chunks as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from pice.openai_protocol import Usage
from pice.tracing import NO_TRACING, Tracing
from pice_gateway.cloud_meter import CloudMeter, StreamTicket
from pice_gateway.request_id import request_hooks
from pice_gateway.settings import GatewaySettings, pool_limits
from pice_gateway.upstream import json_events, open_stream, upstream_client
from pice_gateway.upstream_http import UpstreamClient, UpstreamResponse

# The cloud's name as a source of text, in the ``pice`` report and in errors.
CLOUD = "cloud"


def cloud_http_client(settings: GatewaySettings, tracing: Tracing = NO_TRACING) -> UpstreamClient:
    """The one pooled client to the cloud, with its key and timeouts (closed at shutdown)."""
    cloud = settings.cloud
    key = cloud.api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    return upstream_client(
        CLOUD,
        cloud.base_url.rstrip("/") + "/",
        timeouts=cloud.timeouts.for_transport(),
        limits=pool_limits(cloud.max_connections),
        headers=headers,
        hooks=request_hooks(tracing),
    )


class CloudTextStream:
    """A streamed ``/chat/completions`` call whose content deltas are read as plain text.

    :meth:`open` sends the request and checks the status (so a caller can still answer with a
    real error status); :meth:`texts` reads the deltas. ``usage`` is the cloud's own count when
    the stream ran to its end, otherwise an estimate of one token per content chunk (servers
    stream one token per chunk) with ``usage_estimated`` set.

    With a ``meter``, the stream reports its life to it (opened, first token, closed with its
    token count) for the cloud's measured speed; ``expansion`` says it expands a point. A
    ``ticket`` the caller already opened (counted from placement, before this stream's task
    ran) is used instead of opening one; the caller closes it if the stream never opens.
    """

    def __init__(
        self,
        client: UpstreamClient,
        payload: dict[str, Any],
        *,
        meter: CloudMeter | None = None,
        expansion: bool = False,
        ticket: StreamTicket | None = None,
    ) -> None:
        self._client = client
        self._meter = meter
        self._expansion = expansion
        self._ticket = ticket
        self._payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        self._response: UpstreamResponse | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.content_chunks = 0

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        if self._meter is not None:
            # Counted open from the request on: a stream waiting in the cloud's queue is load.
            if self._ticket is None:
                self._ticket = self._meter.opened(expansion=self._expansion)
            stack.callback(self._closed)
        try:
            self._response = await stack.enter_async_context(
                open_stream(self._client, "chat/completions", self._payload)
            )
        except BaseException:
            self._closed()  # at once: the caller may keep its stack open after an error
            raise

    def _closed(self) -> None:
        if self._meter is not None and self._ticket is not None:
            tokens = self.usage.completion_tokens if self.usage else self.content_chunks
            self._meter.closed(self._ticket, tokens)

    async def texts(self) -> AsyncGenerator[str, None]:
        assert self._response is not None, "open() first"
        async for chunk in json_events(self._response, CLOUD):
            if isinstance(chunk.get("usage"), dict):
                self.usage = Usage.model_validate(chunk["usage"])
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    self.finish_reason = str(choice["finish_reason"])
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if not self.content_chunks and self._ticket is not None:
                        assert self._meter is not None
                        self._meter.first_token(self._ticket)
                    self.content_chunks += 1
                    yield str(content)

    @property
    def usage_estimated(self) -> bool:
        return self.usage is None

    def usage_or_estimate(self) -> Usage:
        return self.usage if self.usage is not None else Usage.of(0, self.content_chunks)
