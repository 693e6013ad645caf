"""The ensemble's k rule: one candidate for the first point, k for later ones with room and
compute to spare."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pice_gateway.placement.base import EdgeStatus, PointPlacement
from pice_gateway.placement.candidates import (
    candidates_for,
    companion_edges,
    joining_cost,
    slowdown,
    spare_slots,
)
from pice_gateway.placement.rate import RateCurve
from tests.gateway.fakes import load_report

# Decode that batches for free (a GPU's memory-bound steps) and a CPU's (measured α ≈ 1/3).
FREE = RateCurve(single=20.0, alpha=0.0)
CPU = RateCurve(single=20.0, alpha=1 / 3)


def edge(
    in_flight: int = 0,
    polled: bool = True,
    rate: RateCurve | None = FREE,
    name: str = "e1",
    up: bool = True,
    **load: Any,
) -> EdgeStatus:
    report = load_report(**load) if polled else None
    return EdgeStatus(name, up=up, in_flight=in_flight, load=report, last_placed=0.0, rate=rate)


def k(
    point: int,
    status: EdgeStatus,
    configured: int = 3,
    max_points: int = 8,
    max_slowdown: float = 0.05,
) -> int:
    return candidates_for(
        point,
        configured=configured,
        max_points=max_points,
        edge=status,
        max_slowdown=max_slowdown,
    )


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
    assert k(5, edge(in_flight=12)) == 2  # k shrinks to what fits
    assert k(5, edge(in_flight=13)) == 1
    # One request of eight points on an idle 16-slot edge never asks for more than 16.
    in_flight = 0
    for point in range(8):
        in_flight += k(point, edge(in_flight=in_flight))
    assert in_flight <= 16


def test_a_busy_edge_gets_one_candidate_per_point() -> None:
    assert k(1, edge(free_sequence_slots=2, running_sequences=14)) == 1


def test_a_compute_bound_edge_gets_one_candidate_whatever_its_free_slots() -> None:
    idle_cpu = edge(rate=CPU)
    assert spare_slots(idle_cpu) == 16
    # Two more sequences beside this point's one: each of the three at (1 + 2/3) the time.
    assert slowdown(idle_cpu, 2) == pytest.approx(2 / 3)
    assert k(1, idle_cpu) == 1
    # Allowed a large slowdown, the slots decide again.
    assert k(1, idle_cpu, max_slowdown=1.0) == 3


def test_k_shrinks_until_the_slowdown_fits() -> None:
    nearly_free = RateCurve(single=20.0, alpha=0.02)
    status = edge(in_flight=4, rate=nearly_free)  # busy 4, so this point makes b = 5
    assert slowdown(status, 2) == pytest.approx(0.04 / 1.08)
    assert slowdown(status, 3) == pytest.approx(0.06 / 1.08)
    assert k(2, status, configured=4, max_slowdown=0.05) == 3
    assert k(2, status, configured=4, max_slowdown=0.06) == 4
    assert k(2, status, configured=4, max_slowdown=0.01) == 1


def test_an_edge_without_a_fitted_rate_gets_one_candidate() -> None:
    assert slowdown(edge(rate=None), 2) is None
    assert k(1, edge(rate=None)) == 1


def test_an_infinite_budget_leaves_the_slots_alone_to_decide() -> None:
    assert k(1, edge(rate=None), max_slowdown=math.inf) == 3
    assert k(1, edge(rate=CPU), max_slowdown=math.inf) == 3
    assert k(5, edge(in_flight=13, rate=None), max_slowdown=math.inf) == 1


# -- companions: candidates from other edges ------------------------------------------------


def companions(
    primary: EdgeStatus,
    others: list[EdgeStatus],
    *,
    point: int = 1,
    chosen: int = 1,
    configured: int = 3,
    max_slowdown: float = 0.05,
    excluded: frozenset[str] = frozenset(),
) -> list[str]:
    placement = PointPlacement("r", point, "Title", excluded, expected_tokens=40.0)
    return companion_edges(
        placement,
        primary=primary,
        chosen=chosen,
        configured=configured,
        max_points=8,
        edges=[primary, *others],
        max_slowdown=max_slowdown,
    )


def test_joining_an_idle_edge_costs_nothing_and_a_busy_cpu_a_third() -> None:
    assert joining_cost(edge(rate=CPU)) == 0.0
    assert joining_cost(edge(in_flight=1, rate=CPU)) == pytest.approx(1 / 3)
    assert joining_cost(edge(in_flight=3, rate=FREE)) == 0.0
    assert joining_cost(edge(rate=None)) is None


def test_idle_edges_as_fast_as_the_primary_each_add_one_candidate() -> None:
    primary = edge(in_flight=1, rate=CPU)  # this point already on it: its k is 1
    others = [edge(name=f"e{i}", rate=CPU) for i in (2, 3, 4)]
    # Up to the configured k in all: two more, the earliest finishers (ties by name).
    assert companions(primary, others) == ["e2", "e3"]
    assert companions(primary, others, chosen=2) == ["e2"]
    assert companions(primary, others, configured=1) == []
    assert companions(primary, others, point=0) == []  # the first point streams live


def test_a_companion_must_not_slow_its_edge_nor_finish_late() -> None:
    primary = edge(in_flight=1, rate=CPU)
    busy_cpu = edge(name="busy", in_flight=2, rate=CPU)  # one more slows its two by 1/4
    slow = edge(name="slow", rate=RateCurve(single=5.0, alpha=1 / 3))  # idle, 4x slower
    unmeasured = edge(name="new", rate=None)
    assert companions(primary, [busy_cpu, slow, unmeasured]) == []
    # With no budget, room alone decides (as for k on one edge), the earliest finishers first
    # (an unmeasured edge is taken at the others' median speed).
    unlimited = companions(
        primary, [busy_cpu, slow, unmeasured], configured=4, max_slowdown=math.inf
    )
    assert unlimited == ["new", "busy", "slow"]


def test_companions_skip_down_excluded_and_full_edges() -> None:
    primary = edge(in_flight=1, rate=CPU)
    others = [
        edge(name="down", up=False, rate=CPU),
        edge(name="failed", rate=CPU),
        edge(name="full", rate=CPU, free_sequence_slots=3),  # 3 - 1 < 6 points to come
        edge(name="ok", rate=CPU),
    ]
    assert companions(primary, others, excluded=frozenset({"failed"})) == ["ok"]
