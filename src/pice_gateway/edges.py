"""The edge registry: every edge's client, its polled load, and this gateway's in-flight counts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from pice.edge_protocol import LoadResponse
from pice.errors import PiceError
from pice_gateway.edge_client import EdgeClient
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS
from pice_gateway.placement.rate import RateFit, ewma

logger = logging.getLogger(__name__)


@dataclass
class Edge:
    client: EdgeClient
    up: bool = False
    load: LoadResponse | None = None
    in_flight: int = 0
    last_placed: float = 0.0
    # Seconds a ``/v1/load`` GET took (EWMA): the link's round trip plus a trivial handler.
    rtt: float | None = None
    rate_fit: RateFit = field(default_factory=RateFit)

    @property
    def name(self) -> str:
        return self.client.name

    def record_load(self, load: LoadResponse, round_trip: float) -> None:
        """A ``/v1/load`` answer that took ``round_trip`` seconds: the edge is up."""
        self.rtt = ewma(self.rtt, round_trip)
        self.rate_fit.observe_load(load)
        self.load = load
        self.up = True

    def status(self) -> EdgeStatus:
        return EdgeStatus(
            name=self.name,
            up=self.up,
            in_flight=self.in_flight,
            load=self.load,
            last_placed=self.last_placed,
            rtt=self.rtt,
            rate=self.rate_fit.curve(),
        )


class EdgeRegistry:
    """Every configured edge, whether it is up, and how busy it is.

    ``up`` follows the last ``/v1/load`` poll; a failed job marks an edge down at once so that
    other requests stop placing points on it until a poll sees it healthy again. Each poll also
    times the round trip and feeds the edge's rate fit; the points edges finish feed a running
    mean of their length (starting from ``point_tokens``), which the ``eft`` policy reads.
    """

    def __init__(
        self, edges: list[Edge], poll_interval: float, point_tokens: float = DEFAULT_POINT_TOKENS
    ) -> None:
        self._edges = {edge.name: edge for edge in edges}
        self._poll_interval = poll_interval
        self._point_tokens = point_tokens

    def client(self, name: str) -> EdgeClient:
        return self._edges[name].client

    def names(self) -> list[str]:
        return list(self._edges)

    def adapter(self, name: str) -> str | None:
        """The LoRA adapter edge ``name`` said it serves at its last poll (``None``: stock)."""
        edge = self._edges.get(name)
        load = edge.load if edge is not None else None
        return load.adapter.name if load is not None and load.adapter is not None else None

    def snapshot(self) -> list[EdgeStatus]:
        return [edge.status() for edge in self._edges.values()]

    def any_up(self) -> bool:
        return any(
            edge.up and (edge.load is None or edge.load.ready) for edge in self._edges.values()
        )

    def acquire(self, name: str, sequences: int) -> None:
        edge = self._edges[name]
        edge.in_flight += sequences
        edge.last_placed = time.monotonic()

    def release(self, name: str, sequences: int) -> None:
        edge = self._edges[name]
        edge.in_flight = max(0, edge.in_flight - sequences)

    def observe_point(self, completion_tokens: int) -> None:
        """An edge finished a point of ``completion_tokens`` tokens."""
        self._point_tokens = ewma(self._point_tokens, float(completion_tokens), weight=0.05)

    def expected_point_tokens(self) -> float:
        return self._point_tokens

    def mark_down(self, name: str, reason: str) -> None:
        edge = self._edges[name]
        if edge.up:
            logger.warning("edge %s marked down: %s", name, reason)
        edge.up = False

    async def _poll(self, edge: Edge) -> None:
        started = time.monotonic()
        try:
            load = await asyncio.wait_for(
                edge.client.load(), timeout=max(1.0, self._poll_interval * 2)
            )
        except (PiceError, TimeoutError) as exc:
            if edge.up:
                logger.warning("edge %s unreachable: %s", edge.name, exc)
            edge.up = False
            return
        if not edge.up:
            logger.info("edge %s is up", edge.name)
        edge.record_load(load, time.monotonic() - started)

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(edge) for edge in self._edges.values()))

    async def run_poller(self) -> None:
        """Poll every edge's load forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            await self.poll_once()

    async def aclose(self) -> None:
        for edge in self._edges.values():
            with contextlib.suppress(Exception):
                await edge.client.aclose()
