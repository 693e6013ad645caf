"""An edge that dialled in: the :class:`~pice_gateway.edge_client.EdgeClient` over its channel.

An edge behind NAT opens a WebSocket to the gateway (:mod:`pice.channel_protocol`,
:mod:`pice_gateway.channel_route`); :class:`ChannelEdgeClient` is what dispatch and the edge
registry use of it, the same protocol as :class:`~pice_gateway.edge_client.HttpEdgeClient`,
so placement, hedging and failover need nothing new:

- :meth:`ChannelEdgeClient.expand` sends a ``job`` and yields its events from a queue of its
  own (many jobs share the socket, told apart by id). Closing the generator before the job
  ended (the client left, a hedge lost, a stall) sends ``cancel``: the edge stops the job and
  frees its KV cells, as a closed HTTP stream would.
- :meth:`ChannelEdgeClient.load` sends a ``load_query`` and waits for the answer. The
  registry's poller calls it as it polls ``/v1/load`` over HTTP, so its round-trip timing
  (the link's RTT, which placement reads), its timeout and its up/down marking hold as they are.
- The connection ending (the edge died, the network changed, the gateway shuts down) fails
  every job on it with :class:`~pice.errors.UpstreamError`: the error dispatch reads as a
  broken connection, so the points fail over to another edge or the cloud and the edge is
  marked down. Nothing is sent twice: a failed-over point continues after the text the client
  already has.

Writes go through one queue and one writer task, so a job's generator can ask for a
``cancel`` from its ``finally`` without awaiting the socket (it may be closing already).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

from pydantic import BaseModel, ValidationError

from pice.channel_protocol import (
    Cancel,
    Job,
    JobEvent,
    LoadQuery,
    LoadReport,
    Refused,
    encode,
    parse_edge_message,
)
from pice.edge_protocol import (
    DoneEvent,
    ErrorEvent,
    ExpandEvent,
    ExpandRequest,
    LoadResponse,
    parse_expand_event,
)
from pice.errors import PiceError, UpstreamError, UpstreamProtocolError
from pice_gateway.edge_client import malformed
from pice_gateway.upstream import error_from_status

logger = logging.getLogger(__name__)

# What a job's queue holds: its next event, or the error that ends it.
_Item = ExpandEvent | PiceError


class ChannelSocket(Protocol):
    """What the client needs of the WebSocket (Starlette's ``WebSocket`` has it)."""

    async def send_text(self, data: str) -> None: ...

    def iter_text(self) -> AsyncIterator[str]: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ChannelEdgeClient:
    """An edge over the WebSocket it opened; see the module doc."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: dict[str, asyncio.Queue[_Item]] = {}
        self._loads: dict[int, asyncio.Future[LoadResponse]] = {}
        self._query_ids = itertools.count()
        # Frames to send, in order; ``None`` asks the writer to close the socket.
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._closed: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def running(self) -> int:
        """Jobs this gateway has running on the edge now."""
        return len(self._jobs)

    def _post(self, message: BaseModel) -> None:
        self._outbox.put_nowait(encode(message))

    def _gone(self) -> UpstreamError:
        return UpstreamError(f"edge {self._name}: {self._closed or 'channel closed'}")

    async def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        if self._closed is not None:
            raise self._gone()
        job_id = uuid.uuid4().hex
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._jobs[job_id] = queue
        ended = False
        try:
            self._post(Job(id=job_id, request=request))
            while True:
                item = await queue.get()
                if isinstance(item, PiceError):
                    ended = True
                    raise item
                # Marked before the yield: a consumer that stops at ``done`` closes the
                # generator there, and the edge has nothing left to cancel.
                ended = isinstance(item, DoneEvent | ErrorEvent)
                yield item
                if ended:
                    return
        finally:
            del self._jobs[job_id]
            if not ended and self._closed is None:
                self._post(Cancel(id=job_id))

    async def load(self) -> LoadResponse:
        if self._closed is not None:
            raise self._gone()
        query = next(self._query_ids)
        answer: asyncio.Future[LoadResponse] = asyncio.get_running_loop().create_future()
        self._loads[query] = answer
        try:
            self._post(LoadQuery(id=query))
            return await answer
        finally:
            self._loads.pop(query, None)

    async def aclose(self) -> None:
        """Fail what runs and close the socket (the registry calls this when the edge leaves)."""
        self._close("the gateway closed the channel")
        self._outbox.put_nowait(None)

    # -- the connection --------------------------------------------------------------------

    async def serve(self, socket: ChannelSocket) -> None:
        """Carry the channel until it closes; then every job and query on it fails."""
        writer = asyncio.create_task(self._write(socket), name=f"channel-writer-{self._name}")
        try:
            async for frame in socket.iter_text():
                self._receive(frame)
        finally:
            self._close("the edge's channel closed")
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self, socket: ChannelSocket) -> None:
        try:
            while (frame := await self._outbox.get()) is not None:
                await socket.send_text(frame)
            await socket.close(1001, "gateway closing the channel")
        except Exception as exc:  # the socket is gone: the reader sees it end too
            logger.info("edge %s: channel write failed: %s", self._name, exc)

    def _close(self, reason: str) -> None:
        if self._closed is not None:
            return
        self._closed = reason
        if self._jobs:
            logger.warning("edge %s: %s with %d jobs running", self._name, reason, len(self._jobs))
        for queue in self._jobs.values():
            queue.put_nowait(self._gone())
        for answer in self._loads.values():
            if not answer.done():
                answer.set_exception(self._gone())

    def _receive(self, frame: str) -> None:
        try:
            message = parse_edge_message(frame)
        except ValueError as exc:
            # Which job it was meant for is unknown: the connection cannot be trusted.
            logger.warning("edge %s sent a malformed channel message: %s", self._name, exc)
            self._close("the edge broke the channel protocol")
            self._outbox.put_nowait(None)
            return
        match message:
            case LoadReport():
                if (answer := self._loads.get(message.id)) is not None and not answer.done():
                    answer.set_result(message.load)
            case JobEvent():
                queue = self._jobs.get(message.id)
                if queue is not None and (item := self._event(message)) is not None:
                    queue.put_nowait(item)
            case Refused():
                if (queue := self._jobs.get(message.id)) is not None:
                    queue.put_nowait(self._refusal(message))

    def _event(self, message: JobEvent) -> _Item | None:
        try:
            return parse_expand_event(message.event)
        except ValidationError as exc:
            kind = message.event.get("type")
            error: UpstreamProtocolError = malformed(self._name, f"{kind!r} event", exc)
            return error

    def _refusal(self, message: Refused) -> PiceError:
        # The error the HTTP path would raise for the same status: a 429 (queue full) is a
        # RateLimitError, which does not take the edge down; a 503 (still loading) does.
        body = {"error": message.error.model_dump()}
        headers = {"retry-after": message.retry_after} if message.retry_after else {}
        return error_from_status(self._name, message.status, json.dumps(body).encode(), headers)
