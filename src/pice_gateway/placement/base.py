"""The placement seam: given a point and the edges' state, choose where it runs.

A policy is a pure decision over snapshots; it does not talk to edges and keeps no request
state, so another one (latency-aware, prefix affinity) plugs in by name (settings
``progressive.placement``, :mod:`.registry`) without touching dispatch. ``None`` means "no
edge": the cloud expands the point.

It places one attempt of one point on one edge. The ensemble's extra candidates, on that edge
and on others (companions), are decided afterwards by :mod:`.candidates`, and chosen among in
:mod:`pice_gateway.progressive.candidates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pice.edge_protocol import LoadResponse
from pice_gateway.placement.rate import RateCurve, RateSource


@dataclass(frozen=True)
class EdgeStatus:
    """A snapshot of one edge as the gateway sees it."""

    name: str
    up: bool
    # Sequences sent and not yet seen finish: this gateway's, plus the other replicas' as
    # last synced (``remote_in_flight``; 0 with one gateway).
    in_flight: int
    # What its ``GET /v1/load`` last reported; ``None`` before the first answer.
    load: LoadResponse | None
    # Monotonic time this gateway last placed work on it (spreads ties).
    last_placed: float
    # Round trip of its ``/v1/load`` GET, seconds (EWMA); ``None`` before the first answer.
    rtt: float | None = None
    # Its decode rate vs batch size, fitted from its load reports (:mod:`.rate`); ``None``
    # until it reported decoding.
    rate: RateCurve | None = None
    # What ``rate`` was fitted to (:mod:`.rate`): "points" (its finished points) or "decode"
    # (its reported decode rate); ``None`` with no rate.
    rate_source: RateSource | None = None
    # Of ``in_flight``, the sequences other gateway replicas sent (:mod:`pice_gateway.membership`).
    remote_in_flight: int = 0
    # Points timed on it so far (placed alone on a free slot, finished): the samples of its
    # points fit, which ``rate`` uses once there are ``MIN_FINISHED_POINTS`` (:mod:`.rate`).
    points_timed: int = 0


@dataclass(frozen=True)
class PointPlacement:
    """What the policy is asked to place: one point of one request."""

    request_id: str
    point: int
    title: str
    # Edges that already failed this point in this request; never chosen again for it.
    excluded: frozenset[str]
    # Tokens the point is expected to decode (``None``: the policy's own default).
    expected_tokens: float | None = None


class PlacementPolicy(Protocol):
    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        """The name of the edge that expands ``point``, or ``None`` for the cloud."""
        ...


def usable(edge: EdgeStatus, point: PointPlacement) -> bool:
    """Up, ready (or not polled yet), and not already failed at this point."""
    return edge.up and edge.name not in point.excluded and (edge.load is None or edge.load.ready)


def busy_sequences(edge: EdgeStatus) -> int:
    """Sequences on the edge (running or queued), from the polled load and this gateway's count.

    The polled count already includes this gateway's sequences as of the last poll, and the
    in-flight count includes ones sent since; the larger of the two is the best estimate
    without double counting.
    """
    if edge.load is None:
        return edge.in_flight
    return max(edge.load.running_sequences + edge.load.queued_sequences, edge.in_flight)
