"""Admission control: the bounded gate, the gateway's 429 past it, and an edge's 429 re-placed."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from pice.admission import AdmissionGate
from pice.errors import OverloadedError, RateLimitError
from pice_gateway.settings import GatewaySettings
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript

# -- the gate --------------------------------------------------------------------------------


def test_the_gate_admits_up_to_its_limit_then_refuses_with_retry_after() -> None:
    gate = AdmissionGate(2, what="runs", retry_after=3)
    first, _ = gate.admit(), gate.admit()
    with pytest.raises(OverloadedError) as refused:
        gate.admit()
    err = refused.value
    assert isinstance(err, RateLimitError)
    assert err.status_code == 429
    assert err.headers() == {"Retry-After": "3"}
    assert err.to_body()["error"]["type"] == "rate_limit_error"
    assert err.to_body()["error"]["code"] == "server_overloaded"
    first.release()
    first.release()  # idempotent: every exit path may give it back
    assert gate.in_flight == 1
    gate.admit()
    assert gate.in_flight == 2


def test_an_unbounded_gate_never_refuses() -> None:
    gate = AdmissionGate(None, what="runs")
    for _ in range(1000):
        gate.admit()
    assert gate.in_flight == 1000


def test_admission_settings_default_to_a_bound() -> None:
    assert GatewaySettings().admission.max_progressive_requests == 64
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        GatewaySettings(admission={"max_progressive_requests": 0})


# -- the gateway past its bound --------------------------------------------------------------


def ask(model: str = "pice-progressive", **kwargs: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Q?"}], **kwargs}


EXPECTED_FROM = "1. **Alpha point**: Body of point 1 from {0}.\n"


@pytest.mark.timeout(30)
def test_past_the_bound_a_request_gets_429_and_none_is_lost() -> None:
    slow = EdgeScript("e1", token_delay=0.2)
    admission = {"max_progressive_requests": 1, "retry_after_seconds": 2}
    with fake_stack(CloudScript(), [slow], admission=admission) as url:
        results: list[httpx.Response] = []

        def first() -> None:
            results.append(httpx.post(url + "/chat/completions", json=ask(), timeout=30))

        running = threading.Thread(target=first)
        running.start()
        deadline = time.monotonic() + 5
        while not slow.jobs and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.jobs, "the first request is running"
        refused = httpx.post(url + "/chat/completions", json=ask(stream=True), timeout=30)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert error["code"] == "server_overloaded"
        # A cloud-only request holds no edge work and is not counted.
        cloud = httpx.post(url + "/chat/completions", json=ask("pice-cloud"), timeout=30)
        assert cloud.status_code == 200
        running.join(timeout=20)
        assert results[0].status_code == 200, "the admitted request completes"
        # Its ticket came back: the next request is admitted, streamed or not.
        again = httpx.post(url + "/chat/completions", json=ask(stream=True), timeout=30)
        assert again.status_code == 200
        last = httpx.post(url + "/chat/completions", json=ask(), timeout=30)
        assert last.status_code == 200
        assert last.json()["choices"][0]["message"]["content"].startswith(
            EXPECTED_FROM.format("e1")
        )


@pytest.mark.timeout(30)
def test_a_client_that_leaves_gives_its_place_back() -> None:
    slow = EdgeScript("e1", token_delay=0.5)
    with fake_stack(CloudScript(), [slow], admission={"max_progressive_requests": 1}) as url:
        with httpx.stream("POST", url + "/chat/completions", json=ask(stream=True)) as r:
            for line in r.iter_lines():
                if "Alpha" in line:
                    break
        deadline = time.monotonic() + 5
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status = httpx.post(url + "/chat/completions", json=ask(), timeout=30).status_code
            time.sleep(0.05)
        assert status == 200


# -- an edge past its bound ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_an_edge_429_places_the_work_elsewhere_and_keeps_the_edge_up() -> None:
    full, good = EdgeScript("full", behaviour="full"), EdgeScript("good")
    with fake_stack(CloudScript(), [full, good]) as url:
        response = httpx.post(url + "/chat/completions", json=ask(), timeout=30)
        assert response.status_code == 200
        body = response.json()
        assert body["choices"][0]["message"]["content"] == "".join(
            f"{n}. **{t}**: Body of point {n} from good.\n"
            for n, t in enumerate(["Alpha point", "Beta point", "Gamma point"], 1)
        )
        assert full.jobs, "the full edge was asked"
        attempts = [p["attempts"] for p in body["pice"]["points"]]
        assert ["full", "good"] in attempts
        ready = httpx.get(url.removesuffix("/v1") + "/ready").json()
        assert ready["edges"] == {"full": True, "good": True}, "a 429 is not an edge failure"


@pytest.mark.timeout(30)
def test_when_every_edge_is_full_the_cloud_expands_the_points() -> None:
    full = EdgeScript("full", behaviour="full")
    with fake_stack(CloudScript(), [full]) as url:
        response = httpx.post(url + "/chat/completions", json=ask(), timeout=30)
    assert response.status_code == 200
    points = response.json()["pice"]["points"]
    assert all(p["edge"] == "cloud" for p in points)
    # (A point that waited in the full edge's lane is placed again before being refused.)
    assert all(p["attempts"][0] == "full" and p["attempts"][-1] == "cloud" for p in points)
