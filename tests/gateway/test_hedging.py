"""Hedging: the pure decision (when a point is late, where to duplicate it) and the race in
dispatch (the first attempt to finish wins, the loser is cancelled, no text twice)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from pice_gateway.placement import EftPolicy, LeastLoadedPolicy
from pice_gateway.placement.base import EdgeStatus, PointPlacement
from pice_gateway.placement.hedging import (
    HedgeRule,
    RunningPoint,
    due,
    estimate_on,
    hedge_target,
    next_due,
)
from pice_gateway.placement.rate import RateCurve
from pice_gateway.settings import GatewaySettings
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript, load_report

RULE = HedgeRule(enabled=True, factor=2.0, floor_seconds=1.0)


def edge(name: str, *, running: int = 0, capacity: int = 4, up: bool = True) -> EdgeStatus:
    load = load_report(running_sequences=running, max_sequences=capacity)
    return EdgeStatus(name=name, up=up, in_flight=0, load=load, last_placed=0.0)


def point(excluded: frozenset[str] = frozenset()) -> PointPlacement:
    return PointPlacement(request_id="r", point=0, title="t", excluded=excluded)


# -- when ------------------------------------------------------------------------------------


def test_a_point_is_due_only_past_factor_times_its_estimate_plus_the_floor() -> None:
    running = [RunningPoint(0, "a", placed_at=100.0, estimate=3.0)]
    assert RULE.deadline(3.0) == 7.0
    assert due(running, 107.0, RULE) == []
    assert due(running, 107.1, RULE) == [0]
    assert next_due(running, RULE) == 107.0


def test_a_point_is_hedged_at_most_once_and_only_once_sent() -> None:
    points = [
        RunningPoint(0, "a", placed_at=0.0, estimate=1.0, hedged=True),
        RunningPoint(1, "a", placed_at=0.0, estimate=1.0, sent=False),
        RunningPoint(2, "a", placed_at=0.0, estimate=1.0),
    ]
    assert due(points, 100.0, RULE) == [2]


def test_nothing_is_due_when_hedging_is_off() -> None:
    points = [RunningPoint(0, "a", placed_at=0.0, estimate=1.0)]
    assert due(points, 100.0, HedgeRule()) == []
    assert next_due(points, HedgeRule()) is None


def test_the_estimate_is_the_eft_estimate_with_the_prior_for_an_unmeasured_edge() -> None:
    slow = EdgeStatus("slow", True, 0, load_report(), 0.0, rtt=0.5, rate=RateCurve(single=4.0))
    fast = EdgeStatus("fast", True, 0, load_report(), 0.0, rate=RateCurve(single=20.0))
    assert estimate_on(slow, [slow, fast], 8.0) == pytest.approx(0.5 + 8.0 / 4.0)
    unmeasured = EdgeStatus("new", True, 0, load_report(), 0.0)
    # The median of the fitted edges (4 and 20 tok/s) stands in for its rate.
    assert estimate_on(unmeasured, [slow, fast, unmeasured], 12.0) == pytest.approx(1.0)


# -- where -----------------------------------------------------------------------------------


def test_the_duplicate_goes_elsewhere_never_to_the_edge_running_the_point() -> None:
    edges = [edge("a"), edge("b", running=1)]
    assert hedge_target(point(), "a", edges, LeastLoadedPolicy()) == "b"


def test_only_edges_with_a_free_slot_take_a_duplicate() -> None:
    edges = [edge("a"), edge("b", running=4), edge("c", up=False)]
    assert hedge_target(point(), "a", edges, LeastLoadedPolicy()) is None
    edges.append(edge("d", running=3))
    assert hedge_target(point(), "a", edges, EftPolicy()) == "d"


def test_edges_that_failed_the_point_are_not_chosen() -> None:
    edges = [edge("a"), edge("b"), edge("c", running=2)]
    chosen = hedge_target(point(frozenset({"b"})), "a", edges, LeastLoadedPolicy())
    assert chosen == "c"


def test_the_cloud_is_never_a_hedge() -> None:
    assert hedge_target(point(), "a", [edge("a")], LeastLoadedPolicy()) is None


def test_hedging_settings_are_validated() -> None:
    settings = GatewaySettings(progressive={"hedging": {"enabled": True, "factor": 3}})
    assert settings.progressive.hedging.factor == 3.0
    assert not GatewaySettings().progressive.hedging.enabled
    with pytest.raises(ValueError, match="greater than 0"):
        GatewaySettings(progressive={"hedging": {"factor": 0}})


# -- the race, through real servers ----------------------------------------------------------

HEDGING = {"hedging": {"enabled": True, "factor": 0.01, "floor_seconds": 0.2}}


def twin_text(points: int = 3) -> str:
    titles = ["Alpha point", "Beta point", "Gamma point"][:points]
    return "".join(
        f"{n}. **{title}**: Body of point {n} from twin.\n" for n, title in enumerate(titles, 1)
    )


def ask(**kwargs: Any) -> dict[str, Any]:
    return {
        "model": "pice-progressive",
        "messages": [{"role": "user", "content": "How to stay healthy?"}],
        **kwargs,
    }


def stream_text(url: str) -> tuple[str, dict[str, Any]]:
    """The streamed answer and the ``pice`` object of its last chunk."""
    pieces: list[str] = []
    report: dict[str, Any] = {}
    with httpx.stream("POST", url + "/chat/completions", json=ask(stream=True), timeout=30) as r:
        assert r.status_code == 200

        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                pieces.append(choice["delta"].get("content") or "")
            report = chunk.get("pice") or report
    return "".join(pieces), report


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def hedges_of(report: dict[str, Any]) -> Sequence[dict[str, Any]]:
    return [hedge for p in report["points"] for hedge in p["hedges"]]


@pytest.mark.timeout(30)
def test_a_late_point_is_duplicated_and_the_client_sees_the_single_run_text() -> None:
    # The slow edge writes one word of each point and then goes silent (well within the stall
    # bound, 5 s): only a hedge can finish its points before that.
    slow = EdgeScript("slow", behaviour="stall", voice="twin")
    fast = EdgeScript("fast", voice="twin")
    with fake_stack(CloudScript(), [slow, fast], progressive=HEDGING) as url:
        text, report = stream_text(url)
        assert text == twin_text(), "same text as one edge alone, nothing sent twice"
        assert slow.jobs, "the slow edge got points"
        hedges = hedges_of(report)
        assert hedges
        assert all(h["source"] == "slow" and h["hedge"] == "fast" for h in hedges)
        assert all(h["winner"] == "fast" for h in hedges)
        assert report["hedges"] == report["hedges_won"] == len(hedges)
        for p in report["points"]:
            if p["hedges"]:
                assert p["attempts"] == ["slow", "fast"]
                assert p["edge"] == "fast"
        # Every job of the slow edge lost every point: each was cancelled (KV freed there).
        wait_for(lambda: slow.cancelled == len(slow.jobs))
        assert slow.cancelled == len(slow.jobs)
        assert slow.running == 0


@pytest.mark.timeout(30)
def test_the_first_attempt_winning_cancels_the_duplicate() -> None:
    # The point's own edge is slow but steady; the duplicate stalls, so the first attempt wins.
    steady = EdgeScript("steady", token_delay=0.15, voice="twin")
    stuck = EdgeScript("stuck", behaviour="stall", voice="twin")
    hedging = {"hedging": {"enabled": True, "factor": 0.01, "floor_seconds": 0.1}}
    with fake_stack(
        CloudScript(), [steady, stuck], progressive={**hedging, "placement": "round-robin"}
    ) as url:
        text, report = stream_text(url)
        assert text == twin_text()
        hedged = [h for h in hedges_of(report) if h["source"] == "steady"]
        assert hedged, "a steady point was duplicated"
        assert all(h["winner"] == "steady" for h in hedged)
        wait_for(lambda: stuck.cancelled == len(stuck.jobs))
        assert stuck.cancelled == len(stuck.jobs)
        assert stuck.running == 0


@pytest.mark.timeout(30)
def test_without_hedging_nothing_is_duplicated() -> None:
    edges = [EdgeScript("a", token_delay=0.05, voice="twin"), EdgeScript("b", voice="twin")]
    with fake_stack(CloudScript(), edges) as url:
        text, report = stream_text(url)
    assert text == twin_text()
    assert report["hedges"] == 0
    assert not hedges_of(report)
