"""Round-robin placement: each usable edge in turn, blind to load and speed (a baseline)."""

from __future__ import annotations

from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable


class RoundRobinPolicy:
    """Cycles over the snapshot's order (the registry's, which is stable), skipping edges that
    are not usable; the turn is shared by every request of the gateway."""

    def __init__(self) -> None:
        self._turn = 0

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        for step in range(len(edges)):
            index = (self._turn + step) % len(edges)
            if usable(edges[index], point):
                self._turn = index + 1
                return edges[index].name
        return None
