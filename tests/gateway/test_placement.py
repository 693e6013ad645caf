"""Least-loaded placement over edge snapshots."""

from __future__ import annotations

from pice_gateway.placement import EdgeStatus, LeastLoadedPolicy, PointPlacement
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
