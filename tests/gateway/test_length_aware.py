"""The length-aware policy (``eft-length``): short points to the slowest edge in time."""

from __future__ import annotations

from pice_gateway.placement import EdgeStatus, EftPolicy, LengthAwarePolicy, PointPlacement
from pice_gateway.placement.rate import RateCurve
from pice_gateway.placement.registry import placement_policy
from tests.gateway.fakes import load_report


def timed(
    name: str, single: float, *, running: int = 0, up: bool = True, last_placed: float = 0.0
) -> EdgeStatus:
    load = load_report(running_sequences=running, max_sequences=8)
    return EdgeStatus(name, up, 0, load, last_placed, rate=RateCurve(single=single))


def point(tokens: float | None, excluded: frozenset[str] = frozenset()) -> PointPlacement:
    return PointPlacement("r", 0, "t", excluded, expected_tokens=tokens)


FAST, MID, SLOW = timed("fast", 30.0), timed("mid", 20.0), timed("slow", 10.0)


def test_a_short_point_goes_to_the_slowest_edge_that_finishes_it_in_time() -> None:
    # 10 tokens: 1.0 s on the slow edge, within 2.5 s; eft would take the fast one.
    assert LengthAwarePolicy().place(point(10.0), [FAST, MID, SLOW]) == "slow"
    assert EftPolicy().place(point(10.0), [FAST, MID, SLOW]) == "fast"


def test_a_longer_point_goes_to_the_slowest_edge_still_in_time() -> None:
    # 40 tokens: slow 4.0 s, mid 2.0 s, fast 1.3 s.
    assert LengthAwarePolicy().place(point(40.0), [FAST, MID, SLOW]) == "mid"


def test_a_point_no_edge_finishes_in_time_goes_where_it_finishes_first() -> None:
    # 90 tokens: fast 3.0 s, the earliest, though over the deadline.
    assert LengthAwarePolicy().place(point(90.0), [SLOW, MID, FAST]) == "fast"


def test_a_crowded_slow_edge_is_not_in_time() -> None:
    # 7 of 8 slots busy: one more decodes at 10·8/(1 + 7/3)/8 = 3 tok/s, 10 tokens in 3.3 s.
    crowded = timed("slow", 10.0, running=7)
    assert LengthAwarePolicy().place(point(10.0), [FAST, MID, crowded]) == "mid"


def test_without_a_length_it_assumes_the_default_and_the_deadline_is_a_parameter() -> None:
    # The default 32 tokens take 3.2 s on the slow edge: over 2.5 s, within 4 s.
    assert LengthAwarePolicy().place(point(None), [FAST, MID, SLOW]) == "mid"
    assert LengthAwarePolicy(deadline_seconds=4.0).place(point(None), [FAST, SLOW]) == "slow"


def test_ties_among_equally_slow_edges_go_to_the_least_recently_used() -> None:
    a, b = timed("a", 10.0, last_placed=5.0), timed("b", 10.0, last_placed=1.0)
    assert LengthAwarePolicy().place(point(10.0), [a, b, FAST]) == "b"


def test_excluded_and_down_edges_are_skipped_and_none_left_is_the_cloud() -> None:
    policy = placement_policy("eft-length")
    assert policy.place(point(10.0, frozenset({"slow"})), [FAST, SLOW]) == "fast"
    assert policy.place(point(10.0), [timed("slow", 10.0, up=False), FAST]) == "fast"
    assert policy.place(point(90.0, frozenset({"fast"})), [FAST, SLOW]) == "slow"
    assert policy.place(point(10.0), [timed("x", 10.0, up=False)]) is None
