"""The gateway's ``/metrics``: scraped after real requests through the fake stack, and the
observer's arithmetic on hand-made reports."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pice.errors import UpstreamError
from pice.openai_protocol import Usage
from pice_gateway.metrics import GatewayMetrics
from pice_gateway.observers import RequestOutcome
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.placement.rate import RateCurve
from pice_gateway.progressive.accounting import OverflowReport, PiceReport, PointReport
from pice_gateway.settings import ModelNames
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.gateway.test_observers import Recorder
from tests.gateway.test_protocol import ask
from tests.support.processes import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(v1_url: str) -> Samples:
    response = httpx.get(v1_url.removesuffix("/v1") + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def served() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    gone = f"http://127.0.0.1:{free_port()}"
    with fake_stack(
        CloudScript(), [EdgeScript("e1")], report_observers=[recorder], extra_edges={"gone": gone}
    ) as url:
        yield url, recorder


def test_a_scrape_counts_progressive_cloud_and_refused_requests(
    served: tuple[str, Recorder],
) -> None:
    url, recorder = served
    progressive = httpx.post(url + "/chat/completions", json=ask(), timeout=30)
    cloud = httpx.post(
        url + "/chat/completions",
        json=ask(model="pice-cloud", stream=True, stream_options={"include_usage": True}),
        timeout=30,
    )
    unknown = httpx.post(url + "/chat/completions", json=ask(model="gpt-nope"), timeout=30)
    assert (progressive.status_code, cloud.status_code, unknown.status_code) == (200, 200, 404)
    [(p_report, _), (c_report, _), _] = recorder.wait_for(3)
    assert p_report is not None
    assert c_report is not None
    samples = scrape(url)

    requests = "pice_gateway_requests_total"
    assert value(samples, requests, model="pice", mode="progressive", reason="outline", status="ok")
    assert value(samples, requests, model="pice-cloud", mode="cloud", reason="model", status="ok")
    # The client's unknown name is not a label value: it is folded into "other".
    assert value(samples, requests, model="other", mode="none", reason="refused", status="error")
    assert sum(v for (name, _), v in samples.items() if name == requests) == 3
    errors = "pice_gateway_request_errors_total"
    assert value(samples, errors, type="invalid_request_error") == 1

    for mode, report in (("progressive", p_report), ("cloud", c_report)):
        ttft = "pice_gateway_time_to_first_token_seconds"
        assert value(samples, ttft + "_count", mode=mode) == 1
        assert report.timings.first_token_ms is not None
        assert value(samples, ttft + "_sum", mode=mode) == pytest.approx(
            report.timings.first_token_ms / 1000
        )
        duration = "pice_gateway_request_duration_seconds"
        assert report.timings.total_ms is not None
        assert value(samples, duration + "_sum", mode=mode) == pytest.approx(
            report.timings.total_ms / 1000
        )
        assert value(samples, duration + "_bucket", mode=mode, le="+Inf") == 1

    assert value(samples, "pice_gateway_points_per_request_count") == 1
    assert value(samples, "pice_gateway_points_per_request_sum") == 3
    assert value(samples, "pice_gateway_points_per_request_bucket", le="3.0") == 1
    assert value(samples, "pice_gateway_points_per_request_bucket", le="2.0") == 0
    assert value(samples, "pice_gateway_point_placements_total", edge="e1") == 3
    assert value(samples, "pice_gateway_point_failovers_total") == 0

    tokens = "pice_gateway_tokens_total"
    cloud_usage = p_report.cloud_usage + c_report.cloud_usage
    assert value(samples, tokens, source="cloud", kind="prompt") == cloud_usage.prompt_tokens
    assert value(samples, tokens, source="cloud", kind="completion") == (
        cloud_usage.completion_tokens
    )
    edge_usage = p_report.edge_usage
    assert edge_usage.completion_tokens > 0
    assert value(samples, tokens, source="edge", kind="prompt") == edge_usage.prompt_tokens
    assert value(samples, tokens, source="edge", kind="completion") == (
        edge_usage.completion_tokens
    )

    assert value(samples, "pice_gateway_edge_up", edge="e1") == 1
    assert value(samples, "pice_gateway_edge_up", edge="gone") == 0
    assert value(samples, "pice_gateway_edge_in_flight_sequences", edge="e1") == 0
    # The three points went out alone on free slots: each was timed for e1's points fit.
    assert value(samples, "pice_gateway_edge_points_timed_total", edge="e1") == 3
    assert value(samples, "pice_gateway_edge_points_timed_total", edge="gone") == 0
    assert value(samples, "pice_gateway_edge_round_trip_seconds", edge="e1") > 0


def test_in_flight_is_read_at_scrape_time_and_released_when_the_client_leaves() -> None:
    edge = EdgeScript("e1", token_delay=0.3)

    def in_flight() -> float:
        return value(scrape(url), "pice_gateway_edge_in_flight_sequences", edge="e1")

    with fake_stack(CloudScript(), [edge]) as url:
        seen: list[float] = []
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as response:
            # Keep reading (leaving the loop closes the stream, which cancels the run). The
            # first point may go out as a job of its own a moment before the other two.
            for line in response.iter_lines():
                if "Body" in line:
                    seen.append(in_flight())
                    if seen[-1] == 3:
                        break
        assert seen[-1] == 3
        # The client left with all three sequences running: the run gives them back.
        deadline = time.monotonic() + 5
        while in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight() == 0
        assert edge.cancelled >= 1


def test_failover_counts_every_attempt() -> None:
    bad, good = EdgeScript("bad", behaviour="error"), EdgeScript("good")
    recorder = Recorder()
    with fake_stack(CloudScript(), [bad, good], report_observers=[recorder]) as url:
        assert httpx.post(url + "/chat/completions", json=ask(), timeout=30).status_code == 200
        [(report, _)] = recorder.wait_for(1)
        samples = scrape(url)
    assert report is not None
    failed_over = [point for point in report.points if len(point.attempts) > 1]
    assert failed_over, "the bad edge got work"
    assert value(samples, "pice_gateway_point_failovers_total") == len(failed_over)
    assert value(samples, "pice_gateway_point_placements_total", edge="bad") == len(failed_over)
    assert value(samples, "pice_gateway_point_placements_total", edge="good") == 3
    assert value(samples, "pice_gateway_point_failures_total", edge="bad") == len(failed_over)
    assert ("pice_gateway_point_failures_total", frozenset({("edge", "good")})) not in samples


def test_metrics_need_no_api_key() -> None:
    with fake_stack(CloudScript(), [EdgeScript("e1")], api_keys=["sekret"]) as url:
        assert httpx.get(url + "/models", timeout=10).status_code == 401
        assert "pice_gateway_edge_up" in {name for name, _ in scrape(url)}


def test_the_observer_counts_router_decisions_failovers_and_bounded_labels() -> None:
    metrics = GatewayMetrics(ModelNames())
    report = PiceReport(
        mode="progressive",
        reason="outline",
        router={"decision": "outline", "score": 0.9},
        points=[
            PointReport(title="a", edge="e2", attempts=["e1", "e2"]),
            PointReport(title="b", edge="cloud", attempts=["e1", "e2", "cloud"]),
            PointReport(
                title="c",
                edge="cloud",
                attempts=["cloud"],
                overflow=OverflowReport(edge="e2", edge_finish_s=9.0, cloud_finish_s=3.0),
            ),
        ],
        cloud_usage=Usage.of(7, 5),
        edge_usage=Usage.of(0, 11),
        hedges=3,
        hedges_won=1,
    )
    failed = RequestOutcome("r1", "pice", True, "error", UpstreamError("cloud down"))
    metrics.observe(report, failed)
    metrics.observe(None, RequestOutcome("r2", "x" * 500, False, "cancelled"))
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "pice_gateway_router_decisions_total", route="outline") == 1
    assert value(samples, "pice_gateway_point_failovers_total") == 2
    assert value(samples, "pice_gateway_point_placements_total", edge="e1") == 2
    assert value(samples, "pice_gateway_point_placements_total", edge="cloud") == 2
    assert value(samples, "pice_gateway_point_overflows_total", edge="e2") == 1
    assert ("pice_gateway_point_overflows_total", frozenset({("edge", "e1")})) not in samples
    # e1 failed both points, e2 the second one; the last attempts are not failures.
    assert value(samples, "pice_gateway_point_failures_total", edge="e1") == 2
    assert value(samples, "pice_gateway_point_failures_total", edge="e2") == 1
    assert ("pice_gateway_point_failures_total", frozenset({("edge", "cloud")})) not in samples
    assert value(samples, "pice_gateway_point_hedges_total") == 3
    assert value(samples, "pice_gateway_point_hedges_won_total") == 1
    assert value(samples, "pice_gateway_request_errors_total", type="upstream_error") == 1
    assert value(samples, "pice_gateway_tokens_total", source="cloud", kind="prompt") == 7
    assert value(samples, "pice_gateway_tokens_total", source="edge", kind="completion") == 11
    assert (
        "pice_gateway_tokens_total",
        frozenset({("source", "edge"), ("kind", "prompt")}),
    ) not in samples
    requests = "pice_gateway_requests_total"
    assert value(
        samples, requests, model="other", mode="none", reason="refused", status="cancelled"
    )
    # Latencies and points describe successful answers only.
    assert value(samples, "pice_gateway_points_per_request_count") == 0
    # Before the lifespan hands it the edge registry, the edge gauges have no samples.
    assert not [name for name, _ in samples if name.startswith("pice_gateway_edge_")]


def test_the_edge_gauges_carry_the_curve_the_estimates_use() -> None:
    metrics = GatewayMetrics(ModelNames())
    fitted = EdgeStatus(
        "fast",
        up=True,
        in_flight=2,
        load=None,
        last_placed=0.0,
        rtt=0.004,
        rate=RateCurve(single=12.5, alpha=0.2),
        rate_source="points",
        points_timed=9,
    )
    polled = EdgeStatus(
        "slow",
        up=True,
        in_flight=0,
        load=None,
        last_placed=0.0,
        rtt=0.05,
        rate=RateCurve(single=3.0),
        rate_source="decode",
        points_timed=3,
    )
    fresh = EdgeStatus("new", up=False, in_flight=0, load=None, last_placed=0.0)
    metrics.watch_edges(lambda: [fitted, polled, fresh])
    samples = parse(generate_latest(metrics.registry).decode())

    single = "pice_gateway_edge_rate_single_tokens_per_second"
    assert value(samples, single, edge="fast", source="points") == 12.5
    assert value(samples, single, edge="slow", source="decode") == 3.0
    assert value(samples, "pice_gateway_edge_rate_alpha", edge="fast", source="points") == 0.2
    assert value(samples, "pice_gateway_edge_rate_alpha", edge="slow", source="decode") == (
        pytest.approx(1 / 3)
    )
    # One series per edge: the source is the curve in use, not every fit the edge has.
    assert [labels for (name, labels) in samples if name == single] == [
        frozenset({("edge", "fast"), ("source", "points")}),
        frozenset({("edge", "slow"), ("source", "decode")}),
    ]
    assert value(samples, "pice_gateway_edge_round_trip_seconds", edge="slow") == 0.05
    assert ("pice_gateway_edge_round_trip_seconds", frozenset({("edge", "new")})) not in samples
    timed = "pice_gateway_edge_points_timed_total"
    assert [value(samples, timed, edge=e) for e in ("fast", "slow", "new")] == [9, 3, 0]
