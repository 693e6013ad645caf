"""Hedging: the pure decision (when a point is late, where to duplicate it) and the race in
dispatch (the first attempt to finish wins, the loser is cancelled, no text twice)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pice.openai_protocol import ChatCompletionRequest
from pice_gateway.placement import EftPolicy, LeastLoadedPolicy
from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.hedging import (
    HedgeRule,
    RunningPoint,
    due,
    estimate_on,
    finish_estimate,
    hedge_target,
    next_due,
)
from pice_gateway.placement.rate import RateCurve
from pice_gateway.progressive.pipeline import ProgressiveRun, Upstreams
from pice_gateway.settings import GatewaySettings
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript, load_report
from tests.gateway.inprocess import InProcessEdge
from tests.gateway.test_dispatch import answer, upstreams

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
    # The record says which curve stood in.
    assert finish_estimate(slow, [slow, fast], 8.0).rate_source == "decode"
    prior = finish_estimate(unmeasured, [slow, fast, unmeasured], 12.0)
    assert (prior.rate_source, prior.single_rate) == ("prior", 12.0)


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


def metric(v1_url: str, name: str) -> float:
    """An unlabelled sample of the gateway's ``/metrics``."""
    text = httpx.get(v1_url.removesuffix("/v1") + "/metrics", timeout=10).text
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def hedges_of(report: dict[str, Any]) -> Sequence[dict[str, Any]]:
    return [hedge for p in report["points"] for hedge in p["hedges"]]


@pytest.mark.timeout(30)
def test_a_late_point_is_duplicated_and_the_client_sees_the_single_run_text() -> None:
    # The slow edge writes one word of each point and then goes silent (well within the stall
    # bound, 5 s): only a hedge can finish its points before that.
    slow = EdgeScript("slow", behaviour="stall", author="twin")
    fast = EdgeScript("fast", author="twin")
    with fake_stack(CloudScript(), [slow, fast], progressive=HEDGING) as url:
        text, report = stream_text(url)
        assert text == twin_text(), "same text as one edge alone, nothing sent twice"
        assert slow.jobs, "the slow edge got points"
        hedges = hedges_of(report)
        # A point of the slow edge is always hedged to the fast one, which wins. On a loaded
        # machine a point of the fast edge can outlast the 0.2 s floor too: its duplicate goes
        # to the slow edge and loses to the original (a CI run saw one).
        rescued = [h for h in hedges if h["source"] == "slow"]
        assert rescued
        assert all(h["hedge"] == "fast" and h["winner"] == "fast" for h in rescued)
        spare = [h for h in hedges if h["source"] == "fast"]
        assert all(h["hedge"] == "slow" and h["winner"] == "fast" for h in spare)
        assert report["hedges"] == len(hedges)
        assert report["hedges_won"] == len(rescued)
        # The metrics count the same hedges (observed once the request has finished).
        wait_for(lambda: metric(url, "pice_gateway_point_hedges_total") == len(hedges))
        assert metric(url, "pice_gateway_point_hedges_total") == len(hedges)
        assert metric(url, "pice_gateway_point_hedges_won_total") == len(rescued)
        for p in report["points"]:
            if p["hedges"] and p["hedges"][0]["source"] == "slow":
                assert p["attempts"] == ["slow", "fast"]
                assert p["edge"] == "fast"
        # Every job of the slow edge lost every point: each was cancelled (KV freed there).
        wait_for(lambda: slow.cancelled == len(slow.jobs))
        assert slow.cancelled == len(slow.jobs)
        assert slow.running == 0


@pytest.mark.timeout(30)
def test_the_first_attempt_winning_cancels_the_duplicate() -> None:
    # The point's own edge is slow but steady; the duplicate stalls, so the first attempt wins.
    steady = EdgeScript("steady", token_delay=0.15, author="twin")
    stuck = EdgeScript("stuck", behaviour="stall", author="twin")
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
    edges = [EdgeScript("a", token_delay=0.05, author="twin"), EdgeScript("b", author="twin")]
    with fake_stack(CloudScript(), edges) as url:
        text, report = stream_text(url)
    assert text == twin_text()
    assert report["hedges"] == 0
    assert not hedges_of(report)


# -- the race in process: the first attempt failing, the duplicate failing -------------------


class Prefer:
    """Places every point on ``first`` while it is usable (so the test knows who runs what)."""

    def __init__(self, first: str) -> None:
        self._first = first
        self._fallback = LeastLoadedPolicy()

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        if any(e.name == self._first and usable(e, point) for e in edges):
            return self._first
        return self._fallback.place(point, edges)


def hedged_run(shared: Upstreams, *, stall_seconds: float = 5.0) -> ProgressiveRun:
    knobs = {
        "edge_stall_seconds": stall_seconds,
        "hedging": {"enabled": True, "factor": 0.01, "floor_seconds": 0.05},
    }
    settings = GatewaySettings(cloud={"model": "cloud-model"}, progressive=knobs)
    request = ChatCompletionRequest.model_validate(
        {"model": "pice-progressive", "messages": [{"role": "user", "content": "Q?"}]}
    )
    return ProgressiveRun(shared, settings, request, allow_direct=False, request_id="pice-hedge")


TWIN = [("Body of point {point} from twin.", -1.0)]


@pytest.mark.timeout(10)
async def test_the_first_attempt_failing_while_hedged_hands_the_point_to_the_duplicate() -> None:
    # The first edge stalls after one word; its duplicate is slow but alive. The stall bound
    # (0.3 s) ends the first attempt while the duplicate is still decoding: the duplicate takes
    # over mid-point, and its held text is matched against what was sent.
    first = InProcessEdge("first", behaviour="stall", variants=TWIN)
    second = InProcessEdge("second", token_delay=0.1, variants=TWIN)
    async with upstreams(CloudScript(), first, second) as shared:
        shared = Upstreams(shared.cloud, shared.registry, Prefer("first"))
        pieces, finished = await answer(hedged_run(shared, stall_seconds=0.3))
    assert "".join(pieces) == twin_text()
    report = finished.report
    for point in report.points:
        assert point.edge == "second"
        assert point.attempts == ["first", "second"]
        assert [(h.source, h.hedge, h.winner) for h in point.hedges] == [
            ("first", "second", "second")
        ]
    assert report.hedges == report.hedges_won == 3
    assert first.running == second.running == 0
    assert shared.registry.snapshot()[0].in_flight == shared.registry.snapshot()[1].in_flight == 0


@pytest.mark.timeout(10)
async def test_a_failing_duplicate_leaves_the_first_attempt_alone() -> None:
    slow = InProcessEdge("slow", token_delay=0.05, variants=TWIN)
    broken = InProcessEdge("broken", behaviour="error", variants=TWIN)
    async with upstreams(CloudScript(), slow, broken) as shared:
        shared = Upstreams(shared.cloud, shared.registry, Prefer("slow"))
        pieces, finished = await answer(hedged_run(shared))
    assert "".join(pieces) == twin_text()
    report = finished.report
    assert all(point.attempts == ["slow"] for point in report.points)
    hedges = [h for point in report.points for h in point.hedges]
    assert hedges, "the slow points were duplicated"
    assert all(h.hedge == "broken" and h.winner is None for h in hedges)
    assert report.hedges_won == 0
    assert shared.registry.snapshot()[1].up, "an error event does not take the edge down"
    assert all(status.in_flight == 0 for status in shared.registry.snapshot())
