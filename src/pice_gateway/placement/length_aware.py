"""Length-aware placement (``eft-length``): a point that is expected to be short goes to the
slowest edge that still finishes it within a deadline; the rest as ``eft``.

Why. With every point's length known, the best split of the work sends long points to fast
edges kept at small batches and short ones to slow edges (docs/benchmarks.md, "Scheduling":
a fluid estimate puts the p95 at 0.60× least-loaded with lengths known, 0.79× without). The
rule here gets there greedily: among the edges whose expected finish
(:func:`~.estimate.expected_finish`, for the point's ``expected_tokens``) is within
``deadline`` seconds, it takes the one with the lowest single-sequence rate (the slowest
device), so the fast edges' slots stay free for the points that need them; when no edge makes
the deadline, the point is long (or the fleet busy) and goes where it finishes first. That
fallback is the point's own finish, not ``eft``'s score with the delay it adds to the others:
a long point is the one that sets its request's latency, and in ``pice sim`` with true lengths
the own finish gave p95 6.27 s against 6.40 s with eft's score (seed 0, 80% load).

It is only as good as ``expected_tokens``. Given the same number for every point (the gateway's
running mean), every point looks alike and the rule sends long points to slow edges, where
they become the tail: in ``pice sim`` that is worse than ``eft``. It pays only with a per-point
length prediction (``PointPlacement.expected_tokens``), which the gateway does not make today;
see docs/benchmarks.md, "Length-aware placement", for how good one would have to be.

Ties among the slowest fitting edges go to the fewest in-flight sequences, then the edge used
least recently.
"""

from __future__ import annotations

from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.eft import prior_curve
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS, expected_finish

# Seconds within which a point counts as "finishing in time" on a slow edge. Tuned in
# ``pice sim``'s 100-edge fleet (2.5 s against 3.5 s: a longer deadline let long points onto
# the Nanos); it is a property of the fleet's speeds and the workload's lengths, so a fleet of
# other devices would want its own.
DEFAULT_DEADLINE_SECONDS = 2.5


class LengthAwarePolicy:
    def __init__(
        self,
        *,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        default_tokens: float = DEFAULT_POINT_TOKENS,
    ) -> None:
        self._deadline = deadline_seconds
        self._default_tokens = default_tokens

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        tokens = point.expected_tokens or self._default_tokens
        prior = prior_curve(edges)
        finish = {
            edge.name: expected_finish(edge, tokens, edge.rate or prior)
            for edge in edges
            if usable(edge, point)
        }
        if not finish:
            return None
        in_time = [
            edge for edge in edges if finish.get(edge.name, self._deadline + 1.0) <= self._deadline
        ]
        if in_time:
            return min(
                in_time, key=lambda e: ((e.rate or prior).single, e.in_flight, e.last_placed)
            ).name
        usable_edges = [edge for edge in edges if edge.name in finish]
        return min(usable_edges, key=lambda e: (finish[e.name], e.in_flight, e.last_placed)).name
