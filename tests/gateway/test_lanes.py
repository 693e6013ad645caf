"""Edge lanes: the first point leaves at once, points placed during a job's setup leave together."""

from __future__ import annotations

from pice_gateway.progressive.lanes import Lanes


def test_first_point_leaves_at_once_and_later_ones_wait_for_the_setup() -> None:
    lanes = Lanes()
    assert lanes.place("e1", 0) == [0]
    assert lanes.place("e1", 1) == []
    assert lanes.place("e1", 2) == []
    assert lanes.any_waiting
    assert lanes.setup_over("e1") == [1, 2]
    assert not lanes.any_waiting
    # The second job is being set up now; its own start lets nothing new leave.
    assert lanes.setup_over("e1") == []
    assert lanes.place("e1", 3) == [3]


def test_lanes_of_different_edges_are_independent() -> None:
    lanes = Lanes()
    assert lanes.place("e1", 0) == [0]
    assert lanes.place("e2", 1) == [1]
    assert lanes.place("e1", 2) == []
    assert lanes.setup_over("e2") == []
    assert lanes.setup_over("e1") == [2]


def test_abandon_hands_back_the_waiting_points_and_resets_the_lane() -> None:
    lanes = Lanes()
    lanes.place("e1", 0)
    lanes.place("e1", 1)
    assert lanes.abandon("e1") == [1]
    assert not lanes.any_waiting
    assert lanes.setup_over("e1") == []
    assert lanes.place("e1", 2) == [2]
