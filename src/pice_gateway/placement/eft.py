"""Earliest-expected-finish placement: the edge that would finish the point first.

Each usable edge's finish time comes from :func:`~.estimate.expected_finish` (round trip, the
sequences ahead of the point, the edge's rate at the batch size the point would join). An edge
whose rate is not fitted yet is assumed as fast as the median fitted edge (so a new edge gets
work and, with it, a measurement), or :data:`~.rate.DEFAULT_SINGLE_RATE` when none is fitted.
Ties, such as among idle unmeasured edges, go to the fewest in-flight sequences, then to the
edge used least recently, as in least-loaded.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS, expected_finish
from pice_gateway.placement.rate import DEFAULT_SINGLE_RATE, RateCurve


def prior_curve(edges: Sequence[EdgeStatus]) -> RateCurve:
    """What an edge with no fitted rate is assumed to do (see the module doc)."""
    fitted = [edge.rate.single for edge in edges if edge.rate is not None]
    return RateCurve(single=statistics.median(fitted) if fitted else DEFAULT_SINGLE_RATE)


class EftPolicy:
    def __init__(self, *, default_tokens: float = DEFAULT_POINT_TOKENS) -> None:
        self._default_tokens = default_tokens

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        candidates = [edge for edge in edges if usable(edge, point)]
        if not candidates:
            return None
        tokens = point.expected_tokens or self._default_tokens
        prior = prior_curve(edges)

        def key(edge: EdgeStatus) -> tuple[float, int, float]:
            finish = expected_finish(edge, tokens, edge.rate or prior)
            return finish, edge.in_flight, edge.last_placed

        return min(candidates, key=key).name
