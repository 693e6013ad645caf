"""The placement seam: given a point and the edges' state, choose where it runs.

A policy is a pure decision over snapshots; it does not talk to edges and keeps no request
state, so another one (latency-aware, prefix affinity) plugs in by name (settings
``progressive.placement``, :mod:`.registry`) without touching dispatch. ``None`` means "no
edge": the cloud expands the point.

It places one attempt of one point on one edge. Running one point on several edges at once (an
ensemble across edges) would need dispatch to run concurrent attempts, which it does not; the
several candidates one edge can decode for a point are chosen among in
:mod:`pice_gateway.progressive.candidates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pice.edge_protocol import LoadResponse


@dataclass(frozen=True)
class EdgeStatus:
    """A snapshot of one edge as the gateway sees it."""

    name: str
    up: bool
    # Sequences this gateway has sent and not yet seen finish.
    in_flight: int
    # What its ``GET /v1/load`` last reported; ``None`` before the first answer.
    load: LoadResponse | None
    # Monotonic time this gateway last placed work on it (spreads ties).
    last_placed: float


@dataclass(frozen=True)
class PointPlacement:
    """What the policy is asked to place: one point of one request."""

    request_id: str
    point: int
    title: str
    # Edges that already failed this point in this request; never chosen again for it.
    excluded: frozenset[str]


class PlacementPolicy(Protocol):
    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        """The name of the edge that expands ``point``, or ``None`` for the cloud."""
        ...
