"""Least-loaded placement: the edge with the smallest share of its sequence slots in use."""

from __future__ import annotations

from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, busy_sequences, usable


def occupancy(edge: EdgeStatus) -> float:
    """Busy sequences over capacity; dividing by ``max_sequences`` lets a bigger edge take more."""
    if edge.load is None:
        return float(edge.in_flight)
    return busy_sequences(edge) / max(1, edge.load.max_sequences)


class LeastLoadedPolicy:
    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        candidates = [edge for edge in edges if usable(edge, point)]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (occupancy(e), e.in_flight, e.last_placed))
        return best.name
