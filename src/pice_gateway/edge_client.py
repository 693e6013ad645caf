"""The gateway's side of the edge wire protocol: typed requests out, typed events back.

:class:`EdgeClient` is what dispatch and the edge registry need from an edge;
:class:`HttpEdgeClient` is the real one, over one pooled upstream client per edge
(:mod:`pice_gateway.upstream_http`). The fast tests drive dispatch with an in-process
implementation of the same protocol.

Failures reach the caller as the one error tree (:mod:`pice.errors`): transport errors and
error statuses as translated in :mod:`pice_gateway.upstream`, an event that breaks the protocol
as :class:`~pice.errors.UpstreamProtocolError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Protocol

from pydantic import ValidationError

from pice.edge_protocol import ExpandEvent, ExpandRequest, LoadResponse, parse_expand_event
from pice.errors import UpstreamProtocolError
from pice.tracing import NO_TRACING, Tracing
from pice_gateway.request_id import request_hooks
from pice_gateway.settings import EdgeClientSettings, EdgeEndpoint, pool_limits
from pice_gateway.upstream import get_json, json_events, open_stream, upstream_client
from pice_gateway.upstream_http import PoolLimits, Timeouts, UpstreamClient


class EdgeClient(Protocol):
    """One edge agent, as dispatch and the registry talk to it."""

    @property
    def name(self) -> str: ...

    def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        """Run one ``/v1/expand`` job and yield its events up to ``done`` (or ``error``).

        Closing the generator early (``contextlib.aclosing``, or cancelling the task iterating
        it) closes the connection, which cancels the job's sequences on the edge.
        """
        ...

    async def load(self) -> LoadResponse:
        """The edge's ``GET /v1/load``."""
        ...

    async def aclose(self) -> None: ...


def malformed(edge: str, what: str, exc: ValidationError) -> UpstreamProtocolError:
    """The error for a message that fails the protocol's models, naming its first problem."""
    problem = exc.errors()[0]
    field = ".".join(str(part) for part in problem["loc"])
    return UpstreamProtocolError(f"edge {edge} sent a malformed {what}: {field}: {problem['msg']}")


class HttpEdgeClient:
    """An edge agent over HTTP: one pooled client, closed by :meth:`aclose`."""

    def __init__(self, name: str, http: UpstreamClient) -> None:
        self._name = name
        self._http = http

    @classmethod
    def connect(
        cls,
        endpoint: EdgeEndpoint,
        timeouts: Timeouts,
        limits: PoolLimits | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> HttpEdgeClient:
        """A client for a configured edge, with its bearer token, timeouts and pool limits;
        with ``tracing`` on, each request carries the current span's ``traceparent``."""
        token = endpoint.token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        http = upstream_client(
            endpoint.name,
            endpoint.url,
            timeouts=timeouts,
            limits=limits or pool_limits(EdgeClientSettings().max_connections),
            headers=headers,
            hooks=request_hooks(tracing),
        )
        return cls(endpoint.name, http)

    @property
    def name(self) -> str:
        return self._name

    async def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        async with (
            open_stream(self._http, "/v1/expand", request.wire()) as response,
            contextlib.aclosing(json_events(response, self._name)) as payloads,
        ):
            async for payload in payloads:
                try:
                    event = parse_expand_event(payload)
                except ValidationError as exc:
                    raise malformed(self._name, f"{payload['type']!r} event", exc) from exc
                if event is not None:
                    yield event

    async def load(self) -> LoadResponse:
        body = await get_json(self._http, "/v1/load")
        try:
            return LoadResponse.model_validate(body)
        except ValidationError as exc:
            raise malformed(self._name, "load report", exc) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
