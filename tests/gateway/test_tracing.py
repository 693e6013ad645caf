"""OpenTelemetry traces: spans recorded by an in-memory exporter (the app's own provider, never
the global one), their parent/child structure, and ``traceparent`` on every upstream call."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from edge_agent.api.app import ServedBackend, create_app
from edge_agent.settings import EdgeSettings
from pice.logs import RequestIdFilter, log_handler
from pice.otel import OtelTracing
from pice.tracing import NO_TRACING, TracingSettings
from pice.tracing_factory import build_tracing, log_filters
from pice_gateway.router.service import RequestRouter
from pice_gateway.settings import RouterSettings
from tests.gateway import conftest
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve
from tests.gateway.test_observers import Recorder
from tests.gateway.test_protocol import ask
from tests.gateway.test_router import KeywordEncoder, weights
from tests.support.fake_engine import FakeBackend

CLIENT_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CLIENT_SPAN = 0xB7AD6B7169203331
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE:032x}-{CLIENT_SPAN:016x}-01"
SERVER = "POST /v1/chat/completions"


class Recording:
    """An :class:`OtelTracing` over its own provider, finished spans kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = OtelTracing(provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.spans(name)
        return span


def traceparent(span: ReadableSpan) -> str:
    """The ``traceparent`` a call made inside ``span`` carries."""
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if parent_id(s) == span_id(parent)]


@pytest.fixture
def recording() -> Iterator[Recording]:
    recording = Recording()
    yield recording
    recording.tracing.shutdown()


def _post(url: str, **body: object) -> httpx.Response:
    headers = {"traceparent": CLIENT_TRACEPARENT, "x-request-id": "r-trace"}
    return httpx.post(url + "/chat/completions", json=ask(**body), headers=headers, timeout=30)


def test_tracing_is_off_by_default_and_off_builds_nothing() -> None:
    assert TracingSettings().enabled is False
    assert build_tracing(TracingSettings(), "pice-gateway") is NO_TRACING


def test_a_progressive_request_is_one_trace_continuing_the_clients(recording: Recording) -> None:
    cloud, edge = CloudScript(), EdgeScript("e1")
    recorder = Recorder()
    with fake_stack(cloud, [edge], report_observers=[recorder], tracing=recording.tracing) as url:
        response = _post(url)
        recorder.wait_for(1)
    assert response.status_code == 200
    spans = recording.spans()
    assert {span.context.trace_id for span in spans if span.context} == {CLIENT_TRACE}

    server = recording.one(SERVER)
    assert server.kind == SpanKind.SERVER
    assert parent_id(server) == CLIENT_SPAN  # the client's span, continued
    attributes = dict(server.attributes or {})
    assert attributes["pice.model"] == "pice"
    assert (attributes["pice.mode"], attributes["pice.reason"]) == ("progressive", "outline")
    assert attributes["pice.request_id"] == "r-trace"
    assert attributes["http.response.status_code"] == 200

    sketch = recording.one("pice.sketch")
    points = recording.spans("pice.point")
    jobs = recording.spans("pice.expand")
    assert {s.name for s in children(spans, server)} == {"pice.sketch", "pice.point", "pice.expand"}
    assert all(parent_id(s) == span_id(server) for s in (sketch, *points, *jobs))
    assert sorted((s.attributes or {})["pice.point"] for s in points) == [0, 1, 2]
    for point in points:
        assert (point.attributes or {})["pice.edge"] == "e1"
        assert (point.attributes or {})["pice.tokens"] == 6
    assert {(s.attributes or {})["pice.edge"] for s in jobs} == {"e1"}
    assert sorted(p for s in jobs for p in (s.attributes or {})["pice.points"]) == [0, 1, 2]

    # The sketch call carried the sketch span's context; each edge job its own span's.
    assert cloud.traceparents == [traceparent(sketch)]
    assert sorted(edge.traceparents) == sorted(traceparent(job) for job in jobs)  # type: ignore[type-var]


def test_failovers_show_on_the_points_and_the_failed_job(recording: Recording) -> None:
    cloud, edge = CloudScript(), EdgeScript("bad", behaviour="error")
    recorder = Recorder()
    with fake_stack(cloud, [edge], report_observers=[recorder], tracing=recording.tracing) as url:
        response = _post(url, model="pice-progressive")
        recorder.wait_for(1)
    assert response.status_code == 200
    jobs = recording.spans("pice.expand")
    failed = [s for s in jobs if (s.attributes or {})["pice.edge"] == "bad"]
    on_cloud = [s for s in jobs if (s.attributes or {})["pice.edge"] == "cloud"]
    assert failed
    assert all(s.status.status_code == StatusCode.ERROR for s in failed)
    assert len(on_cloud) == 3
    for point in recording.spans("pice.point"):
        assert (point.attributes or {})["pice.edge"] == "cloud"
        assert [e.name for e in point.events] == ["failover"]
        assert (point.events[0].attributes or {})["pice.edge"] == "bad"
    # Sketch first, then each cloud expansion under its own span.
    assert cloud.traceparents[0] == traceparent(recording.one("pice.sketch"))
    assert sorted(cloud.traceparents[1:]) == sorted(traceparent(s) for s in on_cloud)  # type: ignore[type-var]


def test_the_router_decision_is_a_span(recording: Recording) -> None:
    def make_router(_: RouterSettings) -> RequestRouter:
        return RequestRouter(KeywordEncoder(), weights())

    cloud = CloudScript()
    with serve(fake_cloud(cloud)) as cloud_url, serve(fake_edge(EdgeScript("e1"))) as edge_url:
        settings = conftest.settings_for(cloud_url, {"e1": edge_url}, router={"enabled": True})
        app = conftest.create_app(settings, router=make_router, tracing=recording.tracing)
        with serve(app) as gateway_url:
            response = _post(
                gateway_url + "/v1", messages=[{"role": "user", "content": "Write code now"}]
            )
    assert response.status_code == 200
    route = recording.one("pice.router")
    server = recording.one(SERVER)
    assert parent_id(route) == span_id(server)
    assert (route.attributes or {})["pice.router.decision"] == "direct"
    assert (server.attributes or {})["pice.reason"] == "router"
    assert cloud.traceparents == [traceparent(server)]  # the direct call, inside the request


def test_the_edge_agent_continues_the_gateways_trace(
    recording: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    """A real edge agent (its routes over a fake engine) with its own provider: its
    ``/v1/expand`` server span is a child of the gateway's job span, its job a child of that,
    and its log lines carry the gateway's request id."""
    caplog.set_level(logging.INFO, logger="edge_agent")
    caplog.handler.addFilter(RequestIdFilter())
    on_edge = Recording()
    fake = FakeBackend()
    fake.may_start.set()

    def backend(_: EdgeSettings) -> ServedBackend:
        return ServedBackend(fake, name="fake-model")

    edge_app = create_app(EdgeSettings(model="fake.gguf"), backend, tracing=on_edge.tracing)
    cloud = CloudScript()
    recorder = Recorder()
    with serve(fake_cloud(cloud)) as cloud_url, serve(edge_app) as edge_url:
        settings = conftest.settings_for(cloud_url, {"agent": edge_url})
        app = conftest.create_app(settings, report_observers=[recorder], tracing=recording.tracing)
        with serve(app) as gateway_url:
            response = _post(gateway_url + "/v1", model="pice-progressive")
            recorder.wait_for(1)
    assert response.status_code == 200
    jobs = {span_id(s): s for s in recording.spans("pice.expand")}
    served = on_edge.spans("POST /v1/expand")
    assert served
    assert len(served) == len(jobs)
    for server in served:
        assert server.kind == SpanKind.SERVER
        assert server.context is not None
        assert server.context.trace_id == CLIENT_TRACE
        assert parent_id(server) in jobs
        [job] = children(on_edge.spans(), server)
        assert job.name == "pice.edge.job"
        assert (job.attributes or {})["pice.completion_tokens"] > 0
    # The edge's load polls are not traced.
    assert {s.name for s in on_edge.spans()} == {"POST /v1/expand", "pice.edge.job"}
    edge_lines = [r for r in caplog.records if r.name.startswith("edge_agent")]
    assert edge_lines
    assert {getattr(r, "request_id", None) for r in edge_lines} == {"r-trace"}
    on_edge.tracing.shutdown()


def test_json_log_lines_inside_a_span_name_its_trace(recording: Recording) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.tracing.logs")
    logger.addHandler(log_handler("json", stream, log_filters(TracingSettings(enabled=True))))
    try:
        logger.warning("outside")
        with recording.tracing.span("work"):
            logger.warning("inside")
    finally:
        logger.handlers.clear()
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    span = recording.one("work")
    assert span.context is not None
    assert inside["trace_id"] == f"{span.context.trace_id:032x}"
    assert inside["span_id"] == f"{span.context.span_id:016x}"
    assert log_filters(TracingSettings()) == []


@pytest.mark.timeout(30)
def test_a_hedged_point_shows_its_duplicate_job_and_the_race(recording: Recording) -> None:
    # The slow edge stalls after one word of each point: the fast edge's duplicates win.
    slow = EdgeScript("slow", behaviour="stall", author="twin")
    fast = EdgeScript("fast", author="twin")
    hedging = {"hedging": {"enabled": True, "factor": 0.01, "floor_seconds": 0.2}}
    recorder = Recorder()
    with fake_stack(
        CloudScript(),
        [slow, fast],
        progressive=hedging,
        report_observers=[recorder],
        tracing=recording.tracing,
    ) as url:
        response = _post(url, model="pice-progressive")
        recorder.wait_for(1)
    assert response.status_code == 200
    hedges = response.json()["pice"]["hedges"]
    assert hedges > 0
    duplicates = [s for s in recording.spans("pice.expand") if (s.attributes or {})["pice.hedge"]]
    assert len(duplicates) == hedges
    # The slow edge's stalled points are copied to the fast one. (A point on the fast edge may be
    # copied too when a loaded machine makes it outlast the tiny deadline, so not "all".)
    assert any((s.attributes or {})["pice.edge"] == "fast" for s in duplicates)
    assert {(s.attributes or {})["pice.edge"] for s in duplicates} <= {"slow", "fast"}
    events = [e for p in recording.spans("pice.point") for e in p.events]
    raced = [e for e in events if e.name == "hedge"]
    settled = [e for e in events if e.name == "hedge settled"]
    assert len(raced) == len(settled) == hedges
    assert all((e.attributes or {})["pice.winner"] == "fast" for e in settled)
