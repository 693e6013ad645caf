"""How many candidates a placed point decodes: the ensemble's k, decided from the edge's load.

Placement chooses the edge first (the policy knows nothing of candidates); then this rule says
how many sequences the point gets there:

- the first point of a request gets one: it streams live, so there is nothing to choose among
  without delaying the answer's first token;
- a later point gets the configured k when the chosen edge has room for them, else one.

"Room" is read from the edge's last ``/v1/load`` snapshot and this gateway's own count of the
sequences it sent since: ``spare = min(free_sequence_slots, max_sequences - in_flight)``, the
more cautious of the two (the poll counts other gateways' work, the in-flight count this
gateway's newest). A point takes k only if, after it, one slot is still left for every point
the request may still name (``max_points`` in all): ensembling must never make a later point of
the same request queue behind candidates. Under load the spare room is gone and every point
decodes one candidate, exactly as without the ensemble. An edge not yet polled gets one.

Candidates from several edges or models (running one point on two edges at once) are out of
scope: dispatch runs one attempt per point at a time (see :mod:`.base`).
"""

from __future__ import annotations

from pice_gateway.placement.base import EdgeStatus


def spare_slots(edge: EdgeStatus) -> int:
    """Sequence slots the edge can start now without queueing (0 when never polled)."""
    if edge.load is None:
        return 0
    return max(0, min(edge.load.free_sequence_slots, edge.load.max_sequences - edge.in_flight))


def candidates_for(point: int, *, configured: int, max_points: int, edge: EdgeStatus) -> int:
    """The candidates point ``point`` (0-based) decodes on ``edge``; see the module doc."""
    if point == 0 or configured <= 1:
        return 1
    still_to_come = max(0, max_points - point - 1)
    return configured if spare_slots(edge) - configured >= still_to_come else 1
