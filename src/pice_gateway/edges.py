"""The edge registry: every edge's client, its polled load, and this gateway's in-flight counts.

Membership can change while the gateway runs: :meth:`EdgeRegistry.join` adds (or replaces) an
edge and :meth:`EdgeRegistry.leave` removes one. Placement sees a change at once, because every
placement reads :meth:`EdgeRegistry.snapshot`. An edge that leaves with jobs still running is
kept aside ("departed") until they finish, so those jobs keep their client and their
bookkeeping; it is closed when its last job releases it.

Several gateway replicas (:mod:`pice_gateway.membership`) each keep their own registry; each
adds what the others have in flight on an edge (:meth:`EdgeRegistry.set_remote_in_flight`) to
its own count, so placement weighs the whole fleet's load, not one replica's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pice.edge_protocol import LoadResponse
from pice.errors import PiceError
from pice_gateway.edge_client import EdgeClient
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS
from pice_gateway.placement.rate import (
    MIN_FINISHED_POINTS,
    RateCurve,
    RateFit,
    RateFrom,
    RateSource,
    ewma,
)

logger = logging.getLogger(__name__)


@dataclass
class Edge:
    client: EdgeClient
    up: bool = False
    load: LoadResponse | None = None
    in_flight: int = 0
    # Sequences the other gateway replicas have in flight here, as last synced.
    remote_in_flight: int = 0
    last_placed: float = 0.0
    # Seconds a ``/v1/load`` GET took (EWMA): the link's round trip plus a trivial handler.
    rtt: float | None = None
    rate_fit: RateFit = field(default_factory=RateFit)
    # The same curve fitted to the points this gateway saw finish here (:mod:`.placement.rate`).
    point_fit: RateFit = field(default_factory=RateFit)
    points_timed: int = 0

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def ready(self) -> bool:
        """Up, and (at its last poll) said its model is loaded: it can take points."""
        return self.up and (self.load is None or self.load.ready)

    def record_load(self, load: LoadResponse, round_trip: float) -> None:
        """A ``/v1/load`` answer that took ``round_trip`` seconds: the edge is up."""
        self.rtt = ewma(self.rtt, round_trip)
        self.rate_fit.observe_load(load)
        self.load = load
        self.up = True

    def observe_finish(self, batch: int, tokens: int, seconds: float) -> None:
        """A point placed here alone on a free slot, into a batch of ``batch`` counting it,
        decoded ``tokens`` tokens in ``seconds`` from placement (round trip taken out)."""
        if tokens <= 0 or seconds <= 0.0:
            return
        self.point_fit.observe(
            batch, batch * tokens / seconds, weight=tokens / DEFAULT_POINT_TOKENS
        )
        self.points_timed += 1

    def status(self, rate_from: RateFrom = "points") -> EdgeStatus:
        rate, source = self._curve(rate_from)
        return EdgeStatus(
            name=self.name,
            up=self.up,
            in_flight=self.in_flight + self.remote_in_flight,
            remote_in_flight=self.remote_in_flight,
            load=self.load,
            last_placed=self.last_placed,
            rtt=self.rtt,
            rate=rate,
            rate_source=source,
            points_timed=self.points_timed,
        )

    def _curve(self, rate_from: RateFrom) -> tuple[RateCurve | None, RateSource | None]:
        if rate_from == "points" and self.points_timed >= MIN_FINISHED_POINTS:
            return self.point_fit.curve(), "points"
        decode = self.rate_fit.curve()
        return decode, ("decode" if decode is not None else None)


class EdgeRegistry:
    """Every configured edge, whether it is up, and how busy it is.

    ``up`` follows the last ``/v1/load`` poll; a failed job marks an edge down at once so that
    other requests stop placing points on it until a poll sees it healthy again. Each poll also
    times the round trip and feeds the edge's rate fit; the points edges finish feed a running
    mean of their length (starting from ``point_tokens``), which the ``eft`` policy reads, and
    (:meth:`observe_finish`) each edge's fit of how fast its points finish; ``rate_from``
    chooses which fit the snapshots carry.
    """

    def __init__(
        self,
        edges: list[Edge],
        poll_interval: float,
        point_tokens: float = DEFAULT_POINT_TOKENS,
        rate_from: RateFrom = "points",
    ) -> None:
        self._rate_from: RateFrom = rate_from
        self._edges = {edge.name: edge for edge in edges}
        # Edges that left while jobs still ran on them: closed when the last one releases.
        self._departed: dict[str, Edge] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._poll_interval = poll_interval
        self._point_tokens = point_tokens

    def _find(self, name: str) -> Edge | None:
        return self._edges.get(name) or self._departed.get(name)

    def client(self, name: str) -> EdgeClient:
        edge = self._find(name)
        if edge is None:
            raise KeyError(name)
        return edge.client

    def __contains__(self, name: object) -> bool:
        return name in self._edges

    def join(self, edge: Edge) -> None:
        """Add ``edge`` to the placement set; an edge of the same name is replaced (and left)."""
        if edge.name in self._edges:
            self.leave(edge.name)
        self._edges[edge.name] = edge
        logger.info("edge %s joined", edge.name)

    def leave(self, name: str) -> None:
        """Take edge ``name`` out of placement now; its running jobs finish (or fail over)."""
        edge = self._edges.pop(name, None)
        if edge is None:
            return
        logger.info("edge %s left (%d sequences still running)", name, edge.in_flight)
        if edge.in_flight > 0:
            self._departed[name] = edge
        else:
            self._close_later(edge)

    def _close_later(self, edge: Edge) -> None:
        task = asyncio.get_running_loop().create_task(edge.client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def names(self) -> list[str]:
        return list(self._edges)

    def _last_load(self, name: str) -> LoadResponse | None:
        edge = self._find(name)
        return edge.load if edge is not None else None

    def adapter(self, name: str) -> str | None:
        """The LoRA adapter edge ``name`` said it serves at its last poll (``None``: stock)."""
        load = self._last_load(name)
        return load.adapter.name if load is not None and load.adapter is not None else None

    def served(self, name: str) -> str | None:
        """What edge ``name`` serves, model and adapter (``model+adapter``), at its last poll;
        ``None`` before one. Two edges that serve the same write comparable log-probabilities."""
        load = self._last_load(name)
        if load is None:
            return None
        adapter = load.adapter
        return load.model if adapter is None else f"{load.model}+{adapter.sha256 or adapter.name}"

    def snapshot(self) -> list[EdgeStatus]:
        return [edge.status(self._rate_from) for edge in self._edges.values()]

    def any_up(self) -> bool:
        return any(edge.ready for edge in self._edges.values())

    def readiness(self) -> dict[str, bool]:
        """Each edge's name and whether it can take points now (``GET /ready``)."""
        return {edge.name: edge.ready for edge in self._edges.values()}

    def acquire(self, name: str, sequences: int) -> None:
        edge = self._find(name)
        if edge is None:
            raise KeyError(name)
        edge.in_flight += sequences
        edge.last_placed = time.monotonic()

    def release(self, name: str, sequences: int) -> None:
        edge = self._find(name)
        if edge is None:
            return
        edge.in_flight = max(0, edge.in_flight - sequences)
        if edge.in_flight == 0 and self._departed.get(name) is edge:
            del self._departed[name]
            self._close_later(edge)

    def observe_point(self, completion_tokens: int) -> None:
        """An edge finished a point of ``completion_tokens`` tokens."""
        self._point_tokens = ewma(self._point_tokens, float(completion_tokens), weight=0.05)

    def observe_finish(self, name: str, batch: int, tokens: int, seconds: float) -> None:
        """See :meth:`Edge.observe_finish`; an edge that left since is forgotten."""
        edge = self._find(name)
        if edge is not None:
            edge.observe_finish(batch, tokens, seconds)

    def expected_point_tokens(self) -> float:
        return self._point_tokens

    def local_in_flight(self) -> dict[str, int]:
        """This gateway's own sequences in flight per edge (departed edges included)."""
        edges = [*self._edges.values(), *self._departed.values()]
        return {edge.name: edge.in_flight for edge in edges if edge.in_flight > 0}

    def set_remote_in_flight(self, counts: Mapping[str, int]) -> None:
        """The other replicas' sequences in flight per edge (an edge not named has none)."""
        for edge in self._edges.values():
            edge.remote_in_flight = counts.get(edge.name, 0)

    def mark_down(self, name: str, reason: str) -> None:
        edge = self._edges.get(name)
        if edge is None:
            return
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

    async def poll_edge(self, name: str) -> bool:
        """Poll edge ``name`` now (a new member, so placement need not wait for the poller);
        whether it is up."""
        edge = self._edges.get(name)
        if edge is None:
            return False
        await self._poll(edge)
        return edge.up

    async def poll_once(self) -> None:
        # A copy: an edge may join or leave while the polls are awaited.
        await asyncio.gather(*(self._poll(edge) for edge in list(self._edges.values())))

    async def run_poller(self) -> None:
        """Poll every edge's load forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.poll_once()
            except Exception:
                # A bug in one poll must not stop them all: placement would read loads that
                # never change again and an edge marked down would never come back.
                logger.exception("edge poll failed; polling continues")

    async def aclose(self) -> None:
        for edge in [*self._edges.values(), *self._departed.values()]:
            with contextlib.suppress(Exception):
                await edge.client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
