"""The length-aware policy (``eft-length``): a short point to the slowest edge in time."""

from __future__ import annotations

import pytest

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


def policy() -> LengthAwarePolicy:
    # Mean length 40 before the first point, so the reference point is ~52 tokens: the idle
    # fast edge finishes it in ~1.7 s, the deadline on an idle fleet.
    return LengthAwarePolicy(default_tokens=40.0)


def test_a_short_point_goes_to_the_slowest_edge_that_finishes_it_in_time() -> None:
    # 10 tokens: 1.0 s on the slow edge, before the deadline; eft would take the fast one.
    assert policy().place(point(10.0), [FAST, MID, SLOW]) == "slow"
    assert EftPolicy().place(point(10.0), [FAST, MID, SLOW]) == "fast"


def test_a_longer_point_goes_to_the_slowest_edge_still_in_time() -> None:
    # 25 tokens: slow 2.5 s (late), mid 1.25 s.
    assert policy().place(point(25.0), [FAST, MID, SLOW]) == "mid"


def test_a_point_no_edge_finishes_in_time_goes_where_it_finishes_first() -> None:
    # 60 tokens: even the fast edge takes 2.0 s, past the deadline; it is still the earliest.
    assert policy().place(point(60.0), [SLOW, MID, FAST]) == "fast"


def test_a_crowded_slow_edge_is_not_in_time() -> None:
    # 7 of 8 slots busy: one more decodes at 10·8/(1 + 7/3)/8 = 3 tok/s, 10 tokens in 3.3 s.
    assert policy().place(point(10.0), [FAST, MID, timed("slow", 10.0, running=7)]) == "mid"


def test_the_deadline_grows_with_the_load_on_the_fast_edges() -> None:
    # Fast and mid edges nearly full: a long point would take ≥ 5 s anywhere, so a 25-token
    # point may take the idle slow edge's 2.5 s (on an idle fleet it went to mid).
    busy = [timed("fast", 30.0, running=7), timed("mid", 20.0, running=7), SLOW]
    assert policy().place(point(25.0), busy) == "slow"


def test_the_reference_follows_the_lengths_it_is_asked_to_place() -> None:
    used = policy()
    for _ in range(100):
        used.place(point(80.0), [FAST])
    assert used.reference_tokens == pytest.approx(1.3 * 80.0, rel=0.01)
    # After long points, 40 tokens is short: mid (2.0 s) is in time; a fresh policy found no
    # edge in time and took the fast one.
    assert used.place(point(40.0), [FAST, MID, SLOW]) == "mid"
    assert policy().place(point(40.0), [FAST, MID, SLOW]) == "fast"


def test_without_a_length_it_assumes_the_default() -> None:
    # A mean-length point: in time where it finishes within 1.3× the best edge's time for it.
    near = timed("near", 25.0)
    assert LengthAwarePolicy(default_tokens=10.0).place(point(None), [FAST, near]) == "near"
    assert LengthAwarePolicy(default_tokens=10.0).place(point(40.0), [FAST, near]) == "fast"


def test_ties_among_equally_slow_edges_go_to_the_least_recently_used() -> None:
    a, b = timed("a", 10.0, last_placed=5.0), timed("b", 10.0, last_placed=1.0)
    assert policy().place(point(10.0), [a, b, FAST]) == "b"


def test_excluded_and_down_edges_are_skipped_and_none_left_is_the_cloud() -> None:
    chosen = placement_policy("eft-length")
    assert chosen.place(point(10.0, frozenset({"slow"})), [FAST, SLOW]) == "fast"
    assert chosen.place(point(10.0), [timed("slow", 10.0, up=False), FAST]) == "fast"
    assert chosen.place(point(90.0, frozenset({"fast"})), [FAST, SLOW]) == "slow"
    assert chosen.place(point(10.0), [timed("x", 10.0, up=False)]) is None
