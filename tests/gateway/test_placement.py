"""The placement policies over edge snapshots: least-loaded, eft, round-robin."""

from __future__ import annotations

from pice_gateway.placement import (
    EdgeStatus,
    EftPolicy,
    LeastLoadedPolicy,
    PointPlacement,
    RoundRobinPolicy,
)
from pice_gateway.placement.rate import RateCurve
from pice_gateway.placement.registry import PLACEMENT_POLICIES, placement_policy
from tests.gateway.fakes import load_report


def edge(
    name: str,
    *,
    running: int = 0,
    in_flight: int = 0,
    capacity: int = 16,
    up: bool = True,
    ready: bool = True,
    last_placed: float = 0.0,
) -> EdgeStatus:
    load = load_report(ready=ready, running_sequences=running, max_sequences=capacity)
    return EdgeStatus(name=name, up=up, in_flight=in_flight, load=load, last_placed=last_placed)


def place(*edges: EdgeStatus, excluded: frozenset[str] = frozenset()) -> str | None:
    point = PointPlacement(request_id="r", point=0, title="t", excluded=excluded)
    return LeastLoadedPolicy().place(point, list(edges))


def test_picks_the_smallest_share_of_capacity() -> None:
    assert place(edge("a", running=4), edge("b", running=2)) == "b"
    assert place(edge("a", running=4, capacity=32), edge("b", running=3, capacity=16)) == "a"


def test_in_flight_counts_since_the_last_poll() -> None:
    assert place(edge("a", running=1), edge("b", running=0, in_flight=3)) == "a"


def test_ties_go_to_the_edge_used_least_recently() -> None:
    assert place(edge("a", last_placed=5.0), edge("b", last_placed=1.0)) == "b"


def test_down_unready_and_excluded_edges_are_skipped() -> None:
    assert place(edge("a", up=False), edge("b", running=9)) == "b"
    assert place(edge("a", ready=False), edge("b", running=9)) == "b"
    assert place(edge("a"), edge("b", running=9), excluded=frozenset({"a"})) == "b"
    assert place(edge("a", up=False), excluded=frozenset()) is None


# -- earliest expected finish -----------------------------------------------------------------


def timed(
    name: str,
    single: float,
    *,
    running: int = 0,
    queued: int = 0,
    rtt: float = 0.0,
    up: bool = True,
) -> EdgeStatus:
    load = load_report(running_sequences=running, queued_sequences=queued, max_sequences=8)
    return EdgeStatus(name, up, 0, load, 0.0, rtt=rtt, rate=RateCurve(single=single))


def eft(
    *edges: EdgeStatus, tokens: float = 32.0, excluded: frozenset[str] = frozenset()
) -> str | None:
    point = PointPlacement("r", 0, "t", excluded, expected_tokens=tokens)
    return EftPolicy().place(point, list(edges))


def test_a_fast_edge_with_a_short_queue_beats_a_slow_idle_one() -> None:
    # Fast, batch of 5: 32 / 17.1 tok/s = 1.9 s; slow and idle: 32 / 10 = 3.2 s.
    assert eft(timed("fast", 40.0, running=4), timed("slow", 10.0)) == "fast"


def test_a_fast_edge_with_a_long_queue_loses_to_a_slow_idle_one() -> None:
    # Fast, full with 12 queued: 13 sequences ahead at 96 tok/s, then 2.7 s: 7 s.
    assert eft(timed("fast", 40.0, running=8, queued=12), timed("slow", 10.0)) == "slow"


def test_the_round_trip_counts_more_for_short_points() -> None:
    far, near = timed("far", 40.0, rtt=3.0), timed("near", 10.0, rtt=0.05)
    assert eft(far, near, tokens=32.0) == "near"  # 3.8 s against 3.25 s
    assert eft(far, near, tokens=320.0) == "far"  # 11 s against 32 s
    assert eft(timed("a", 20.0, rtt=0.4), timed("b", 20.0, rtt=0.1)) == "b"


def test_a_crowded_fast_edge_loses_to_an_idle_slow_one_once_its_others_count() -> None:
    # Fast (40 tok/s alone) with 4 running: the point itself finishes in 32 / 17.14 = 1.87 s,
    # before the idle slow edge's 32 / 12 = 2.67 s, but it slows the 4 others by 1.07 s in all:
    # 2.93 s against 2.67 s. The slow edge is the cheaper place.
    fast, slow = timed("fast", 40.0, running=4), timed("slow", 12.0)
    assert eft(fast, slow) == "slow"
    # With one sequence beside it the fast edge still wins: 1.07 + 0.27 s against 2.67 s.
    assert eft(timed("fast", 40.0, running=1), slow) == "fast"
    # And with a much slower idle edge the crowded fast one is still worth joining.
    assert eft(fast, timed("slower", 8.0)) == "fast"


def test_of_two_equal_edges_the_emptier_wins_even_by_its_own_finish() -> None:
    # The same rate: the point's finish and its cost to others both grow with the batch.
    for running in range(1, 8):
        assert eft(timed("a", 20.0, running=running), timed("b", 20.0, running=running - 1)) == "b"


def test_eft_never_chooses_an_excluded_or_down_edge_and_falls_back_to_the_cloud() -> None:
    fast, slow = timed("fast", 40.0), timed("slow", 10.0)
    assert eft(fast, slow, excluded=frozenset({"fast"})) == "slow"
    assert eft(timed("fast", 40.0, up=False), slow) == "slow"
    assert eft(fast, slow, excluded=frozenset({"fast", "slow"})) is None


def test_an_unmeasured_edge_is_assumed_as_fast_as_the_median_and_ties_spread() -> None:
    new = EdgeStatus("new", True, 0, load_report(max_sequences=8), 0.0)
    assert eft(timed("busy", 20.0, running=6), new) == "new"
    # No edge measured: the idle ones tie, and the least recently used is chosen.
    a = EdgeStatus("a", True, 0, load_report(), 5.0)
    b = EdgeStatus("b", True, 0, load_report(), 1.0)
    assert eft(a, b) == "b"


# -- round robin ------------------------------------------------------------------------------


def test_round_robin_cycles_and_skips_unusable_edges() -> None:
    policy = RoundRobinPolicy()
    point = PointPlacement("r", 0, "t", frozenset())
    edges = [edge("a"), edge("b", running=16), edge("c")]
    assert [policy.place(point, edges) for _ in range(4)] == ["a", "b", "c", "a"]
    edges[2] = edge("c", up=False)
    skipping = PointPlacement("r", 0, "t", frozenset({"a"}))
    assert [policy.place(skipping, edges) for _ in range(3)] == ["b", "b", "b"]
    assert policy.place(point, [edge("x", up=False)]) is None


def test_every_policy_is_registered_by_name() -> None:
    assert set(PLACEMENT_POLICIES) == {"least-loaded", "eft", "eft-length", "round-robin"}
    assert isinstance(placement_policy("eft"), EftPolicy)
    assert placement_policy("round-robin") is not placement_policy("round-robin")
