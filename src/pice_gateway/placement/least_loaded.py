"""Least-loaded placement: the edge with the smallest share of its sequence slots in use."""

from __future__ import annotations

from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement


def occupancy(edge: EdgeStatus) -> float:
    """Busy sequences over capacity, from the polled load and this gateway's own counts.

    The polled count already includes this gateway's sequences as of the last poll, and the
    in-flight count includes ones sent since; the larger of the two is the best estimate
    without double counting. Dividing by ``max_sequences`` lets a bigger edge take more.
    """
    if edge.load is None:
        return float(edge.in_flight)
    polled = edge.load.running_sequences + edge.load.queued_sequences
    return max(polled, edge.in_flight) / max(1, edge.load.max_sequences)


class LeastLoadedPolicy:
    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        candidates = [
            edge
            for edge in edges
            if edge.up
            and edge.name not in point.excluded
            and (edge.load is None or edge.load.ready)
        ]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (occupancy(e), e.in_flight, e.last_placed))
        return best.name
