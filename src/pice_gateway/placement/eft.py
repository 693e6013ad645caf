"""Earliest-expected-finish placement: the edge that would finish the point first, counting
what the point costs the sequences already there.

Each usable edge is scored by the point's own finish time, :func:`~.estimate.expected_finish`
(round trip, the sequences ahead of the point, the edge's rate at the batch size the point
would join), plus the time it adds to the sequences it would decode beside,
:func:`~.estimate.added_delay`; the smallest score wins.

Why the second term. Greedy on the point's own finish alone, every edge is filled until its
per-sequence rate falls to the same level: a fast edge is still "first" at a large batch, so
the fastest devices end up near saturation (in the simulator's 100-edge fleet at 80% load,
AGX Orins ran ~21 of 32 slots while the Orin Nanos ran about one sequence), and each point
placed there slows twenty others. The sum of both terms is what the point adds to the total
time all points spend decoding; minimising it spreads work so a fast edge keeps a higher rate
per sequence (for a batched edge that is where the marginal throughput lies) and a slow, idle
edge takes a point when the fast one is crowded. Points' lengths are not known at placement (a
running mean), so this cannot send long points to fast edges; see docs/benchmarks.md,
"Scheduling", for what that leaves on the table.

An edge whose rate is not fitted yet is assumed as fast as the median fitted edge (so a new
edge gets work and, with it, a measurement), or :data:`~.rate.DEFAULT_SINGLE_RATE` when none
is fitted.
Ties, such as among idle unmeasured edges, go to the fewest in-flight sequences, then to the
edge used least recently, as in least-loaded.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS, added_delay, expected_finish
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
            curve = edge.rate or prior
            cost = expected_finish(edge, tokens, curve) + added_delay(edge, tokens, curve)
            return cost, edge.in_flight, edge.last_placed

        return min(candidates, key=key).name
