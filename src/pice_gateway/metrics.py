"""The gateway's Prometheus metrics, served at ``GET /metrics``.

Two sources, one registry per app (never the global default one, so two apps in one process, as
in the tests, do not collide):

- :meth:`GatewayMetrics.observe` is a report observer (:mod:`pice_gateway.observers`): it turns
  each finished chat request's ``pice`` report and outcome into counters and histograms. The
  request path never touches a metric object itself.
- :class:`EdgeCollector` reads the edge registry's snapshot at scrape time (up, in flight, the
  rate curve the estimates use, the round trip), as the edge agent's own collector does
  (``edge_agent/engine/metrics.py``).

Label values are bounded: ``model`` is one of the served names or ``other`` (clients choose the
name they send), ``edge`` a configured edge or ``cloud``. Every metric is listed, with its labels,
in ``docs/operations.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from pice_gateway.observers import RequestOutcome
from pice_gateway.placement.base import EdgeStatus
from pice_gateway.progressive.accounting import PiceReport
from pice_gateway.settings import ModelNames

# Seconds. A cloud answer's first token comes in well under a second; a progressive one waits
# for the sketch (a few seconds); a CPU edge expanding many points can take minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
POINT_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20)

EdgeSnapshot = Callable[[], Sequence[EdgeStatus]]


class EdgeCollector(Collector):
    """Per-edge gauges read from the edge registry when Prometheus scrapes."""

    def __init__(self) -> None:
        self.snapshot: EdgeSnapshot = tuple  # no edges until the lifespan has built the registry

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pice_gateway_edge_up", "1 when the edge's last load poll succeeded", labels=["edge"]
        )
        in_flight = GaugeMetricFamily(
            "pice_gateway_edge_in_flight_sequences",
            "Sequences this gateway has sent to the edge and not yet seen finish",
            labels=["edge"],
        )
        # What the finish-time estimates read (eft, hedging, overflow): the rate curve in use
        # and what it was fitted to, the poll's round trip, and the points fit's samples.
        single = GaugeMetricFamily(
            "pice_gateway_edge_rate_single_tokens_per_second",
            "r1 of the edge's rate curve in use: tokens/s of one sequence alone",
            labels=["edge", "source"],
        )
        alpha = GaugeMetricFamily(
            "pice_gateway_edge_rate_alpha",
            "alpha of the edge's rate curve in use: 0 perfect batching, 1 none",
            labels=["edge", "source"],
        )
        rtt = GaugeMetricFamily(
            "pice_gateway_edge_round_trip_seconds",
            "Round trip of the edge's load poll (EWMA)",
            labels=["edge"],
        )
        timed = CounterMetricFamily(
            "pice_gateway_edge_points_timed",
            "Points placed alone on a free slot of the edge and timed to their finish",
            labels=["edge"],
        )
        for edge in self.snapshot():
            up.add_metric([edge.name], 1.0 if edge.up else 0.0)
            in_flight.add_metric([edge.name], edge.in_flight - edge.remote_in_flight)
            if edge.rate is not None and edge.rate_source is not None:
                single.add_metric([edge.name, edge.rate_source], edge.rate.single)
                alpha.add_metric([edge.name, edge.rate_source], edge.rate.alpha)
            if edge.rtt is not None:
                rtt.add_metric([edge.name], edge.rtt)
            timed.add_metric([edge.name], edge.points_timed)
        yield from (up, in_flight, single, alpha, rtt, timed)


class GatewayMetrics:
    """The gateway's metrics registry and the report observer that feeds it."""

    def __init__(self, models: ModelNames) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._served = frozenset((models.auto, models.progressive, models.cloud))
        self.edges = EdgeCollector()
        self.registry.register(self.edges)
        registry = self.registry
        self.requests = Counter(
            "pice_gateway_requests",
            "Finished chat completion requests",
            ["model", "mode", "reason", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "pice_gateway_request_errors",
            "Chat requests that ended in an error, by the error type the client was told",
            ["type"],
            registry=registry,
        )
        self.ttft = Histogram(
            "pice_gateway_time_to_first_token_seconds",
            "From the request's arrival to its first content token (successful requests)",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "pice_gateway_request_duration_seconds",
            "From the request's arrival to its last token (successful requests)",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.points = Histogram(
            "pice_gateway_points_per_request",
            "Outline points of successful progressive answers (0: the sketch answered directly)",
            buckets=POINT_BUCKETS,
            registry=registry,
        )
        self.placements = Counter(
            "pice_gateway_point_placements",
            "Point expansions started on each source (an edge, or the cloud), failovers included",
            ["edge"],
            registry=registry,
        )
        self.failovers = Counter(
            "pice_gateway_point_failovers",
            "Points that needed more than one attempt",
            registry=registry,
        )
        self.failures = Counter(
            "pice_gateway_point_failures",
            "Point attempts that failed on each source (an edge, or the cloud) and were retried",
            ["edge"],
            registry=registry,
        )
        # Fed by the report's hedge counts (``progressive.hedging`` duplicates a late point on
        # a spare edge; the first attempt to finish wins).
        self.hedges = Counter(
            "pice_gateway_point_hedges",
            "Late points duplicated on another edge (hedging)",
            registry=registry,
        )
        self.hedges_won = Counter(
            "pice_gateway_point_hedges_won",
            "Hedged points that the duplicate finished first",
            registry=registry,
        )
        self.overflows = Counter(
            "pice_gateway_point_overflows",
            "Points cloud overflow moved from the placement policy's edge to the cloud",
            ["edge"],
            registry=registry,
        )
        self.routes = Counter(
            "pice_gateway_router_decisions",
            "The router's decisions for the auto model",
            ["route"],
            registry=registry,
        )
        self.tokens = Counter(
            "pice_gateway_tokens",
            "Tokens reported by the upstreams, by source and kind (failed requests included)",
            ["source", "kind"],
            registry=registry,
        )

    def watch_edges(self, snapshot: EdgeSnapshot) -> None:
        """Read per-edge gauges from ``snapshot`` (the edge registry's) from now on."""
        self.edges.snapshot = snapshot

    def observe(self, report: PiceReport | None, outcome: RequestOutcome) -> None:
        """The report observer: one finished chat request into the metrics."""
        model = outcome.model if outcome.model in self._served else "other"
        mode = "none" if report is None else report.mode
        reason = "refused" if report is None else report.reason
        self.requests.labels(model, mode, reason, outcome.status).inc()
        if outcome.error is not None:
            self.errors.labels(outcome.error.error_type).inc()
        if report is None:
            return
        self._usage(report)
        if report.router is not None:
            self.routes.labels(str(report.router.get("decision"))).inc()
        for point in report.points:
            for source in point.attempts:
                self.placements.labels(source).inc()
            if len(point.attempts) > 1:
                self.failovers.inc()
            # Every attempt but the last was given up for the next one.
            for source in point.attempts[:-1]:
                self.failures.labels(source).inc()
            if point.overflow is not None:
                self.overflows.labels(point.overflow.edge).inc()
        if report.hedges:
            self.hedges.inc(report.hedges)
        if report.hedges_won:
            self.hedges_won.inc(report.hedges_won)
        if outcome.status != "ok":
            return
        timings = report.timings
        if timings.first_token_ms is not None:
            self.ttft.labels(report.mode).observe(timings.first_token_ms / 1000.0)
        if timings.total_ms is not None:
            self.duration.labels(report.mode).observe(timings.total_ms / 1000.0)
        if report.mode == "progressive":
            self.points.observe(len(report.points))

    def _usage(self, report: PiceReport) -> None:
        for source, usage in (("cloud", report.cloud_usage), ("edge", report.edge_usage)):
            if usage.prompt_tokens:
                self.tokens.labels(source, "prompt").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                self.tokens.labels(source, "completion").inc(usage.completion_tokens)

    def router(self) -> APIRouter:
        """``GET /metrics``: the Prometheus text format, unauthenticated like ``/health``."""
        router = APIRouter()

        @router.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return router
