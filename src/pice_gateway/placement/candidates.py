"""How many candidates a placed point decodes: the ensemble's k, decided from the edge's load.

Placement chooses the edge first (the policy knows nothing of candidates); then this rule says
how many sequences the point gets there:

- the first point of a request gets one: it streams live, so there is nothing to choose among
  without delaying the answer's first token;
- a later point gets the largest k up to the configured one that the chosen edge has room for
  *and compute for*, else one.

"Room" is read from the edge's last ``/v1/load`` snapshot and this gateway's own count of the
sequences it sent since: ``spare = min(free_sequence_slots, max_sequences - in_flight)``, the
more cautious of the two (the poll counts other gateways' work, the in-flight count this
gateway's newest). A point takes k only if, after it, one slot is still left for every point
the request may still name (``max_points`` in all): ensembling must never make a later point of
the same request queue behind candidates. Under load the spare room is gone and every point
decodes one candidate, exactly as without the ensemble. An edge not yet polled gets one.

"Compute" is read from the edge's rate curve (:mod:`.rate`, fitted from its load reports). A
free slot is not free compute: on a CPU edge every sequence in the batch slows the others
(α ≈ 1/3 there), and three candidates per point made answers 49% slower (docs/benchmarks.md,
"Ensemble"). The k − 1 extra sequences slow every sequence on the edge by

    per_sequence(b) / per_sequence(b + k − 1) − 1 = α·(k − 1) / (1 + α·(b − 1))

with ``b`` the edge's busy sequences plus this point; k is allowed only while that stays within
``max_slowdown``. Where batching is nearly free (a GPU's memory-bound decode, α near 0) the
ensemble runs; on an edge whose decode is compute-bound it does not, whatever its free slots.
An edge whose curve is not fitted yet gets one candidate.

Candidates from other edges (:func:`companion_edges`): when the chosen edge's k falls short of
the configured one, other edges may each decode one more candidate of the point, a
*companion* — where edges run different models (or adapters) this is the research's ensemble
of several SLMs; where they run the same model, the companion samples like candidates 1..k-1.
An edge takes a companion only if it passes the same two checks for one sequence (room, and
joining its batch slows the sequences already there by at most ``max_slowdown``; an idle edge
costs nothing) and is expected to finish it no later than ``1 + max_slowdown`` times the chosen
edge's expected finish, so that waiting for it costs the point nothing visible. The earliest
finishers are taken, up to the configured k in all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, busy_sequences, usable
from pice_gateway.placement.hedging import estimate_on


def spare_slots(edge: EdgeStatus) -> int:
    """Sequence slots the edge can start now without queueing (0 when never polled)."""
    if edge.load is None:
        return 0
    return max(0, min(edge.load.free_sequence_slots, edge.load.max_sequences - edge.in_flight))


def _slowing(edge: EdgeStatus, batch: int, extra: int) -> float | None:
    """How much ``extra`` more sequences slow each of ``batch`` decoding on ``edge``."""
    if edge.rate is None:
        return None
    return edge.rate.per_sequence(batch) / edge.rate.per_sequence(batch + extra) - 1.0


def slowdown(edge: EdgeStatus, extra: int) -> float | None:
    """How much ``extra`` more sequences would slow each one decoding on ``edge`` with this
    point (0.1 = 10%); ``None`` while its rate curve is unknown."""
    return _slowing(edge, busy_sequences(edge) + 1, extra)


def candidates_for(
    point: int, *, configured: int, max_points: int, edge: EdgeStatus, max_slowdown: float
) -> int:
    """The candidates point ``point`` (0-based) decodes on ``edge``; see the module doc."""
    if point == 0 or configured <= 1:
        return 1
    still_to_come = max(0, max_points - point - 1)
    check_compute = not math.isinf(max_slowdown)
    for k in range(configured, 1, -1):
        cost = slowdown(edge, k - 1) if check_compute else 0.0
        if cost is None:
            return 1
        if spare_slots(edge) - k >= still_to_come and cost <= max_slowdown:
            return k
    return 1


def joining_cost(edge: EdgeStatus) -> float | None:
    """How much one more sequence would slow each one already decoding on ``edge`` (0 when it
    is idle); ``None`` while its rate curve is unknown."""
    return _slowing(edge, busy_sequences(edge), 1)


def companion_edges(
    placement: PointPlacement,
    *,
    primary: EdgeStatus,
    chosen: int,
    configured: int,
    max_points: int,
    edges: Sequence[EdgeStatus],
    max_slowdown: float,
) -> list[str]:
    """The other edges that each decode one more candidate of the point placed on ``primary``
    with ``chosen`` candidates; see the module doc. ``[]`` for the first point."""
    wanted = configured - chosen
    if placement.point == 0 or wanted <= 0:
        return []
    tokens = placement.expected_tokens or 1.0
    still_to_come = max(0, max_points - placement.point - 1)
    check_compute = not math.isinf(max_slowdown)
    deadline = estimate_on(primary, edges, tokens) * (1.0 + max_slowdown)
    found: list[tuple[float, str]] = []
    for edge in edges:
        if edge.name == primary.name or not usable(edge, placement):
            continue
        if spare_slots(edge) - 1 < still_to_come:
            continue
        finish = estimate_on(edge, edges, tokens)
        if check_compute:
            cost = joining_cost(edge)
            if cost is None or cost > max_slowdown or finish > deadline:
                continue
        found.append((finish, edge.name))
    return [name for _, name in sorted(found)[:wanted]]
