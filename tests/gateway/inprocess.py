"""In-process doubles of the upstreams for the fast tier: no socket, no server thread.

:class:`InProcessEdge` implements the gateway's :class:`~pice_gateway.edge_client.EdgeClient`
with the typed wire events (:mod:`pice.edge_protocol`), and :func:`mock_cloud` serves the fake
cloud's script (:mod:`tests.gateway.fakes`) through an in-process transport
(:mod:`tests.support.upstream_mock`). Both write the same texts as the uvicorn fakes, so the
expected answers are the same.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

from pice.edge_protocol import (
    DeltaEvent,
    ErrorBody,
    ErrorEvent,
    ExpandEvent,
    ExpandRequest,
    LoadResponse,
    StartEvent,
)
from pice.errors import UpstreamError, UpstreamProtocolError
from tests.gateway.fakes import (
    CloudDies,
    CloudScript,
    candidate_words,
    cloud_chunks,
    cloud_error,
    job_done,
    load_report,
    point_done,
    point_words,
    split_words,
)
from tests.support.upstream_mock import HandlerTransport


@dataclass
class InProcessEdge:
    """An edge agent as an object. ``behaviour`` after the first delta of a job: ``ok``, ``die``
    (the connection breaks), ``stall`` (silence), ``malformed`` (a broken event), or ``error``
    (an error event instead of any delta).

    ``variants`` gives each candidate its own body and ``logprob_mean`` (``{point}`` and
    ``{edge}`` are filled in); without them candidate c > 0 writes candidate 0's words in upper
    case. ``free_slots`` is what ``/v1/load`` reports free (16 sequences in all)."""

    name: str
    behaviour: str = "ok"
    token_delay: float = 0.0
    start_delay: float = 0.0
    # False: /v1/load fails, as for an edge that is not running.
    reachable: bool = True
    variants: list[tuple[str, float]] = field(default_factory=list)
    free_slots: int = 16
    # The model its load reports name (edges of one model write comparable log-probabilities).
    model: str = "fake"
    jobs: list[ExpandRequest] = field(default_factory=list)
    running: int = 0
    cancelled: int = 0
    closed: bool = False

    async def load(self) -> LoadResponse:
        if not self.reachable:
            raise UpstreamError(f"{self.name} failed: ConnectError: connection refused")
        return load_report(
            model=self.model, running_sequences=self.running, free_sequence_slots=self.free_slots
        )

    async def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        self.jobs.append(request)
        sequences = len(request.point_indices()) * request.candidates
        self.running += sequences
        finished = False
        try:
            await asyncio.sleep(self.start_delay)
            yield StartEvent(job_id="j", model="fake", prompt_tokens=20, queued_ms=0.0)
            if self.behaviour == "error":
                yield ErrorEvent(error=ErrorBody(message="boom", type="internal_error"))
                finished = True
                return
            for point in request.point_indices():
                async for event in self._point(point, request.candidates):
                    yield event
            yield job_done(len(request.point_indices()))
            finished = True
        finally:
            self.running -= sequences
            if not finished:
                self.cancelled += 1

    def _candidate(self, point: int, candidate: int) -> tuple[list[str], float]:
        if not self.variants:
            return candidate_words(point_words(point, self.name), candidate), -1.0
        text, logprob = self.variants[candidate]
        return split_words(text.format(point=point + 1, edge=self.name)), logprob

    async def _point(self, point: int, candidates: int) -> AsyncIterator[ExpandEvent]:
        bodies = [self._candidate(point, c) for c in range(candidates)]
        for n in range(max(len(body) for body, _ in bodies)):
            if n == 1 and self.behaviour == "die":
                raise UpstreamError(f"{self.name} failed: RemoteProtocolError: peer closed")
            if n == 1 and self.behaviour == "stall":
                await asyncio.Event().wait()
            if n == 1 and self.behaviour == "malformed":
                raise UpstreamProtocolError(f"edge {self.name} sent a malformed 'delta' event")
            await asyncio.sleep(self.token_delay)
            for candidate, (body, _) in enumerate(bodies):
                if n < len(body):
                    yield DeltaEvent(point=point, candidate=candidate, text=body[n])
        for candidate, (body, logprob) in enumerate(bodies):
            yield point_done(point, body, candidate, logprob)

    async def aclose(self) -> None:
        self.closed = True


def mock_cloud(script: CloudScript) -> HandlerTransport:
    """The same fake cloud in process (streamed answers only): no socket, no server thread.

    The body is an async generator, so the client reads it chunk by chunk as it is written, and
    closing the response closes the generator (which the script's ``closed`` count shows).
    """

    async def body(request_body: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            async for payload in cloud_chunks(script, request_body):
                yield f"data: {payload}\n\n".encode()
        except CloudDies as exc:
            raise aiohttp.ServerDisconnectedError("peer closed connection") from exc
        finally:
            script.closed += 1

    async def handle(request: httpx.Request) -> httpx.Response:
        request_body = json.loads(request.content)
        script.requests.append(request_body)
        if script.fail_status is not None:
            return httpx.Response(script.fail_status, json=cloud_error())
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=body(request_body))

    return HandlerTransport(handle)
