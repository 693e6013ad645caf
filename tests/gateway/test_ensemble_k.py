"""The ensemble's k rule: one candidate for the first point, k for later ones with room."""

from __future__ import annotations

from typing import Any

from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.candidates import candidates_for, spare_slots
from tests.gateway.fakes import load_report


def edge(in_flight: int = 0, polled: bool = True, **load: Any) -> EdgeStatus:
    report = load_report(**load) if polled else None
    return EdgeStatus("e1", up=True, in_flight=in_flight, load=report, last_placed=0.0)


def k(point: int, status: EdgeStatus, configured: int = 3, max_points: int = 8) -> int:
    return candidates_for(point, configured=configured, max_points=max_points, edge=status)


def test_the_first_point_and_a_disabled_ensemble_get_one_candidate() -> None:
    assert k(0, edge()) == 1
    assert k(1, edge(), configured=1) == 1
    assert k(1, edge()) == 3


def test_spare_slots_take_the_more_cautious_of_the_poll_and_the_in_flight_count() -> None:
    assert spare_slots(edge()) == 16
    assert spare_slots(edge(in_flight=10)) == 6
    assert spare_slots(edge(free_sequence_slots=4)) == 4
    assert spare_slots(edge(polled=False)) == 0
    assert k(3, edge(polled=False)) == 1


def test_k_leaves_one_slot_for_every_point_still_to_come() -> None:
    # Point 5 of 8: two more may come. 16 - 11 = 5 spare: 3 candidates leave 2, just enough.
    assert k(5, edge(in_flight=11)) == 3
    assert k(5, edge(in_flight=12)) == 1
    # One request of eight points on an idle 16-slot edge never asks for more than 16.
    in_flight = 0
    for point in range(8):
        in_flight += k(point, edge(in_flight=in_flight))
    assert in_flight <= 16


def test_a_busy_edge_gets_one_candidate_per_point() -> None:
    assert k(1, edge(free_sequence_slots=2, running_sequences=14)) == 1
