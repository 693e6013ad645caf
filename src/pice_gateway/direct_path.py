"""The cloud-direct path: the client's request forwarded to the cloud, answers relayed back.

The body is forwarded with every field the client set (unknown ones included), only ``model``
replaced by the cloud's; answers come back with the gateway's model name and the ``pice``
extension (on the completion, or on the last chunk of a stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pice.errors import PiceError
from pice.http.sse import Event, sse_done, sse_error, sse_json
from pice.openai_protocol import ChatCompletionRequest, Usage
from pice_gateway.cloud_client import CLOUD
from pice_gateway.observers import RequestObservation
from pice_gateway.progressive.accounting import Clock, PiceReport
from pice_gateway.upstream import json_event_batches, open_stream, post_json
from pice_gateway.upstream_http import UpstreamClient, UpstreamResponse


def cloud_payload(request: ChatCompletionRequest, cloud_model: str) -> dict[str, Any]:
    payload = request.model_dump(mode="json", exclude_unset=True)
    payload["model"] = cloud_model
    # PICE's own request extension (progressive.options) means nothing to the cloud.
    payload.pop("pice", None)
    return payload


def _account(report: PiceReport, clock: Clock, usage: Any, first_token_ms: float | None) -> None:
    if isinstance(usage, dict):
        report.cloud_usage = Usage.model_validate(usage)
    report.timings.first_token_ms = first_token_ms
    report.timings.total_ms = clock.ms()


async def cloud_completion(
    client: UpstreamClient,
    request: ChatCompletionRequest,
    *,
    cloud_model: str,
    report: PiceReport,
    clock: Clock,
) -> dict[str, Any]:
    """The cloud's completion with the gateway's model name and ``report`` filled in."""
    body = await post_json(client, "chat/completions", cloud_payload(request, cloud_model))
    body["model"] = request.model
    _account(report, clock, body.get("usage"), clock.ms())
    body["pice"] = report.model_dump(mode="json")
    return body


class CloudRelay:
    """A streamed cloud answer: :meth:`start` before the first byte, :meth:`events` after."""

    def __init__(
        self,
        client: UpstreamClient,
        request: ChatCompletionRequest,
        *,
        cloud_model: str,
        report: PiceReport,
        clock: Clock,
    ) -> None:
        self._client = client
        self._request = request
        self._payload = cloud_payload(request, cloud_model)
        # The cloud is always asked for its token count (the report and the metrics need it);
        # a client that did not ask for usage gets neither the usage chunk nor the fields.
        self._client_usage = request.include_usage()
        options = self._payload.get("stream_options") or {}
        self._payload["stream_options"] = {**options, "include_usage": True}
        self._report = report
        self._clock = clock
        self._stack = contextlib.AsyncExitStack()
        self._response: UpstreamResponse | None = None

    async def start(self) -> None:
        self._response = await self._stack.enter_async_context(
            open_stream(self._client, "chat/completions", self._payload)
        )

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def events(self, observation: RequestObservation) -> AsyncIterator[Event]:
        """Relay the chunks, holding each back by one so the last can carry ``pice``.

        The chunks that one read of the cloud's body brought go out as one write.
        """
        assert self._response is not None, "start() first"
        held: dict[str, Any] | None = None
        first_token_ms: float | None = None
        usage: Any = None
        try:
            async with contextlib.aclosing(json_event_batches(self._response, CLOUD)) as batches:
                async for batch in batches:
                    ready: list[bytes] = []
                    for chunk in batch:
                        chunk["model"] = self._request.model
                        if first_token_ms is None and chunk.get("choices"):
                            first_token_ms = self._clock.ms()
                        if isinstance(chunk.get("usage"), dict):
                            usage = chunk["usage"]
                        if not self._client_usage:
                            chunk.pop("usage", None)
                            if chunk.get("choices") == []:
                                continue  # the usage chunk the client did not ask for
                        if held is not None:
                            ready.append(sse_json(held))
                        held = chunk
                    if ready:
                        yield b"".join(ready)
            _account(self._report, self._clock, usage, first_token_ms)
            observation.ok()
            if held is not None:
                held["pice"] = self._report.model_dump(mode="json")
                yield sse_json(held)
        except PiceError as err:
            observation.failed(err)
            if held is not None:
                yield sse_json(held)
            yield sse_error(err)
        except Exception as exc:
            observation.failed(exc)
            raise
        finally:
            observation.cancelled()  # the client left first (nothing if the relay ended)
            await asyncio.shield(asyncio.ensure_future(self.aclose()))
        yield sse_done()
