"""The per-request decision from load: the pure rules, and the gateway acting on them."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from pice_gateway.load_decision import LoadInputs, LoadRule, decide
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.rate import RateCurve
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript, load_report

RULE = LoadRule(enabled=True, cloud_tokens_per_second=50.0, edge_slowdown=2.0)


def edge(name: str, *, running: int = 0, rate: float = 20.0, up: bool = True) -> EdgeStatus:
    load = load_report(running_sequences=running, max_sequences=4)
    return EdgeStatus(name, up, 0, load, 0.0, rtt=0.01, rate=RateCurve(single=rate))


def inputs(*edges: EdgeStatus, cloud: int = 0, auto: bool = True) -> LoadInputs:
    return LoadInputs(
        edges=list(edges),
        max_points=8,
        point_tokens=20.0,
        cloud_in_flight=cloud,
        may_answer_directly=auto,
    )


def test_edges_with_room_and_speed_get_the_outline() -> None:
    decision = decide(inputs(edge("a"), edge("b", running=4)), RULE)
    assert (decision.mode, decision.reason, decision.max_points) == ("progressive", "ok", 8)
    report = decision.report()
    assert report["edges_usable"] == 2
    assert report["edges_with_free_slot"] == 1
    # Fastest edge: 0.01 s round trip + 20 tokens at 20 tok/s; the cloud alone 8·20/50 s.
    assert report["edge_finish_s"] == pytest.approx(1.01)
    assert report["cloud_alone_s"] == pytest.approx(3.2)


def test_every_edge_saturated_sends_pice_to_the_cloud() -> None:
    decision = decide(inputs(edge("a", running=4), edge("b", running=5)), RULE)
    assert (decision.mode, decision.reason) == ("cloud", "edges_saturated")
    assert decision.report()["edges_with_free_slot"] == 0


def test_edges_much_slower_than_the_cloud_alone_send_pice_to_the_cloud() -> None:
    # 20 tokens at 2 tok/s = 10 s for the fastest edge, > 2 × 3.2 s for the cloud alone.
    decision = decide(inputs(edge("a", rate=2.0), edge("b", rate=2.5)), RULE)
    assert (decision.mode, decision.reason) == ("cloud", "edges_slow")
    # Without a stated cloud rate that rule cannot run.
    assert decide(inputs(edge("a", rate=2.0)), LoadRule(enabled=True)).reason == "ok"


def test_pice_progressive_keeps_its_outline_whatever_the_edges() -> None:
    decision = decide(inputs(edge("a", running=4), auto=False), RULE)
    assert (decision.mode, decision.reason) == ("progressive", "ok")


def test_a_busy_cloud_asks_the_sketch_for_fewer_points() -> None:
    rule = LoadRule(enabled=True, cloud_busy_requests=3, busy_max_points=4)
    assert decide(inputs(edge("a"), cloud=2), rule).max_points == 8
    busy = decide(inputs(edge("a"), cloud=3), rule)
    assert (busy.mode, busy.reason, busy.max_points) == ("progressive", "cloud_busy", 4)
    assert busy.report()["cloud_in_flight"] == 3


def test_edges_that_are_down_do_not_count() -> None:
    decision = decide(inputs(edge("a", up=False), edge("b", running=4)), RULE)
    assert decision.reason == "edges_saturated"
    assert decision.report()["edges_usable"] == 1


# -- through the gateway ---------------------------------------------------------------------


def ask(model: str = "pice", **kwargs: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Q?"}], **kwargs}


@pytest.mark.timeout(30)
def test_saturated_edges_answer_pice_from_the_cloud_with_the_decision_reported() -> None:
    full = EdgeScript("e1", running=16)
    with fake_stack(CloudScript(), [full], load_decision={"enabled": True}) as url:
        # Until the first load poll (every 0.2 s) the edge's load is unknown, not full.
        deadline = time.monotonic() + 5
        cloud = httpx.post(url + "/chat/completions", json=ask(), timeout=30).json()
        while cloud["pice"]["mode"] != "cloud" and time.monotonic() < deadline:
            time.sleep(0.05)
            cloud = httpx.post(url + "/chat/completions", json=ask(), timeout=30).json()
        outline = httpx.post(
            url + "/chat/completions", json=ask("pice-progressive"), timeout=30
        ).json()
    assert cloud["pice"]["mode"] == "cloud"
    assert cloud["pice"]["reason"] == "load:edges_saturated"
    assert cloud["pice"]["load"]["edges_with_free_slot"] == 0
    assert outline["pice"]["mode"] == "progressive", "pice-progressive keeps its outline"
    assert outline["pice"]["load"]["reason"] == "ok"


@pytest.mark.timeout(30)
def test_with_the_cloud_busy_the_next_request_gets_fewer_points() -> None:
    slow = EdgeScript("e1", token_delay=0.2)
    knobs = {"enabled": True, "cloud_busy_requests": 1, "busy_max_points": 2}
    with fake_stack(CloudScript(), [slow], load_decision=knobs) as url:
        first: list[dict[str, Any]] = []
        running = threading.Thread(
            target=lambda: first.append(
                httpx.post(url + "/chat/completions", json=ask(), timeout=30).json()
            )
        )
        running.start()
        deadline = time.monotonic() + 5
        while not slow.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        second = httpx.post(url + "/chat/completions", json=ask(), timeout=30).json()
        running.join(timeout=20)
    assert first[0]["pice"]["load"]["reason"] == "ok"
    assert len(first[0]["pice"]["points"]) == 3
    assert second["pice"]["load"]["reason"] == "cloud_busy"
    assert second["pice"]["load"]["max_points"] == 2
    assert len(second["pice"]["points"]) == 2
