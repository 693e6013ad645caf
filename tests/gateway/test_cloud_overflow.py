"""Cloud overflow: the cloud's measured speed (``cloud_meter``), the rule
(``placement.overflow``) and dispatch moving points to the cloud when it is clearly sooner."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pice.openai_protocol import ChatCompletionRequest
from pice_gateway.cloud_client import CLOUD
from pice_gateway.cloud_meter import MIN_RATE_TOKENS, CloudMeter
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.placement import LeastLoadedPolicy
from pice_gateway.placement.overflow import OverflowRule, to_cloud
from pice_gateway.progressive.dispatch import Dispatcher
from pice_gateway.progressive.events import PointStarted
from pice_gateway.progressive.pipeline import Finished, ProgressiveRun, TextOut, Upstreams
from pice_gateway.settings import GatewaySettings
from pice_gateway.upstream_http import UpstreamClient
from tests.gateway.fakes import CloudScript
from tests.gateway.inprocess import InProcessEdge, mock_cloud
from tests.gateway.test_dispatch import Recorder, spec

pytestmark = pytest.mark.timeout(10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def measured(rate: float, *, ttft: float = 0.1, clock: FakeClock | None = None) -> CloudMeter:
    """A meter that has seen one stream decode alone at ``rate`` tokens/s after ``ttft``."""
    clock = clock or FakeClock()
    meter = CloudMeter(clock=clock)
    ticket = meter.opened(expansion=False)
    clock.now += ttft
    meter.first_token(ticket)
    clock.now += 2.0
    meter.closed(ticket, int(rate * 2.0) + 1)
    return meter


# -- the meter ---------------------------------------------------------------------------------


def test_nothing_is_expected_before_a_stream_finished() -> None:
    clock = FakeClock()
    meter = CloudMeter(clock=clock)
    ticket = meter.opened(expansion=True)
    assert (meter.open_streams, meter.open_expansions) == (1, 1)
    clock.now += 0.5
    meter.first_token(ticket)
    assert meter.ttft == pytest.approx(0.5)
    assert meter.curve() is None
    assert meter.expected_finish(32) is None


def test_a_stream_alone_measures_the_single_stream_rate() -> None:
    meter = measured(25.0, ttft=0.2)
    curve = meter.curve()
    assert curve is not None
    assert curve.single == pytest.approx(25.0)
    assert meter.open_streams == 0
    # Nothing open: the next stream decodes alone.
    assert meter.expected_finish(50) == pytest.approx(0.2 + 50 / 25.0)


def test_the_batch_is_the_mean_of_the_streams_open_while_it_decoded() -> None:
    clock = FakeClock()
    meter = CloudMeter(clock=clock)
    a = meter.opened(expansion=False)
    meter.first_token(a)
    clock.now += 1.0
    b = meter.opened(expansion=False)  # beside a for 2 of a's 4 seconds
    clock.now += 2.0
    meter.closed(b, 0)  # too short to measure a rate
    clock.now += 1.0
    meter.closed(a, 41)  # 40 tokens after the first in 4 s: 10 tok/s at a mean batch of 1.5
    curve = meter.curve()
    assert curve is not None
    # The one pair the fit holds: 10 tok/s per stream at batch 1.5, aggregate 15 (the rate
    # model at b = 1.5). Alone the stream would have been faster than the 10 tok/s it saw.
    assert curve.single * 1.5 / (1.0 + curve.alpha * 0.5) == pytest.approx(15.0)
    assert curve.per_sequence(1) > 10.0


def test_short_streams_and_double_closes_do_not_skew_the_counts() -> None:
    clock = FakeClock()
    meter = CloudMeter(clock=clock)
    ticket = meter.opened(expansion=True)
    meter.first_token(ticket)
    clock.now += 1.0
    meter.closed(ticket, MIN_RATE_TOKENS - 1)
    meter.closed(ticket, 100)
    assert (meter.open_streams, meter.open_expansions) == (0, 0)
    assert meter.curve() is None, "a few tokens say nothing about the rate"


def test_open_streams_slow_the_expected_finish() -> None:
    meter = measured(20.0)
    alone = meter.expected_finish(40)
    meter.opened(expansion=False)
    meter.opened(expansion=False)
    beside_two = meter.expected_finish(40)
    assert alone is not None
    assert beside_two is not None
    assert beside_two > alone


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edge_finish", "cloud_finish", "open_expansions", "rule", "expected"),
    [
        (10.0, 2.0, 0, OverflowRule(enabled=True), True),
        (10.0, 2.0, 0, OverflowRule(enabled=False), False),
        (10.0, None, 0, OverflowRule(enabled=True), False),
        (10.0, 2.0, 2, OverflowRule(enabled=True, max_points=2), False),
        (10.0, 2.0, 1, OverflowRule(enabled=True, max_points=2), True),
        # Sooner, but not by the margin.
        (2.9, 2.0, 0, OverflowRule(enabled=True, margin=1.5), False),
        (3.1, 2.0, 0, OverflowRule(enabled=True, margin=1.5), True),
    ],
)
def test_the_rule(
    edge_finish: float,
    cloud_finish: float | None,
    open_expansions: int,
    rule: OverflowRule,
    expected: bool,
) -> None:
    assert to_cloud(edge_finish, cloud_finish, open_expansions, rule) is expected


# -- dispatch ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def upstreams(
    cloud: CloudScript, meter: CloudMeter, *edges: InProcessEdge
) -> AsyncIterator[Upstreams]:
    registry = EdgeRegistry([Edge(edge) for edge in edges], poll_interval=1.0)
    await registry.poll_once()
    async with UpstreamClient("cloud", "http://cloud/v1/", mock_cloud(cloud)) as http:
        yield Upstreams(
            cloud=http, registry=registry, policy=LeastLoadedPolicy(), cloud_meter=meter
        )


def run_with(shared: Upstreams, **overflow: Any) -> ProgressiveRun:
    settings = GatewaySettings(
        cloud={"model": "cloud-model"}, progressive={"cloud_overflow": overflow}
    )
    request = ChatCompletionRequest.model_validate(
        {"model": "pice-progressive", "messages": [{"role": "user", "content": "Stay healthy?"}]}
    )
    return ProgressiveRun(shared, settings, request, allow_direct=False, request_id="t")


async def answer(run: ProgressiveRun) -> tuple[str, Finished]:
    await run.start()
    text = ""
    async for event in run.events():
        if isinstance(event, TextOut):
            text += event.text
        else:
            return text, event
    raise AssertionError("no Finished")


async def test_points_go_to_a_cloud_much_sooner_than_the_edge() -> None:
    # The edge is unmeasured (the prior: 20 tok/s alone, 32 tokens in 1.6 s); the cloud was
    # measured at 200 tok/s after 0.01 s, so it finishes a point in about 0.17 s.
    meter = measured(200.0, ttft=0.01)
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), meter, edge) as shared:
        text, finished = await answer(run_with(shared, enabled=True, max_points=8))
    points = finished.report.points
    assert [point.edge for point in points] == [CLOUD] * 3
    assert text.count("Expanded by the cloud.") == 3
    first = points[0].overflow
    assert first is not None
    assert first.edge == "e1"
    assert first.cloud_finish_s * 1.5 < first.edge_finish_s
    assert not edge.jobs
    assert (meter.open_streams, meter.open_expansions) == (0, 0), "every stream was closed"


async def test_the_cap_keeps_the_rest_on_the_edges() -> None:
    meter = measured(200.0, ttft=0.01)
    edge = InProcessEdge("e1", token_delay=0.001)
    # The cloud's expansion is long, so the first overflow point is still open on the cloud
    # when the short sketch names the next two.
    cloud = CloudScript(expansion="More and more words. " * 100, token_delay=0.002)
    async with upstreams(cloud, meter, edge) as shared:
        _, finished = await answer(run_with(shared, enabled=True, max_points=1))
    assert [point.edge for point in finished.report.points] == [CLOUD, "e1", "e1"]
    assert meter.open_expansions == 0


async def test_off_or_not_sooner_the_policy_decides() -> None:
    for meter, overflow in (
        (measured(200.0, ttft=0.01), {"enabled": False}),
        (measured(5.0, ttft=0.5), {"enabled": True}),  # the cloud is the slower one
    ):
        edge = InProcessEdge("e1")
        async with upstreams(CloudScript(), meter, edge) as shared:
            _, finished = await answer(run_with(shared, **overflow))
        assert [point.edge for point in finished.report.points] == ["e1"] * 3
        assert all(point.overflow is None for point in finished.report.points)


async def test_the_sketch_stream_feeds_the_meter() -> None:
    meter = CloudMeter()
    # A long sketch (its words repeated) at a known pace: enough tokens to measure a rate.
    cloud = CloudScript(repeat=4, token_delay=0.002)
    async with upstreams(cloud, meter, InProcessEdge("e1")) as shared:
        await answer(run_with(shared))
    assert meter.ttft is not None
    assert meter.curve() is not None
    assert meter.open_streams == 0


async def test_the_cap_counts_a_cloud_point_from_its_placement() -> None:
    # Three points named in one go (a sketch chunk can hold several lines): the first goes to
    # the cloud, and its job has not run yet when the next two are placed. They must see it.
    meter = measured(200.0, ttft=0.01)
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), meter, edge) as shared:
        recorder = Recorder()
        dispatcher = Dispatcher(
            registry=shared.registry,
            policy=shared.policy,
            cloud=shared.cloud,
            spec=spec(),
            emit=recorder,
            overflow=OverflowRule(enabled=True, max_points=1),
            cloud_meter=meter,
        )
        recorder.dispatcher = dispatcher
        for index, title in enumerate(["Alpha", "Beta", "Gamma"]):
            dispatcher.add_point(index, title)
        assert meter.open_expansions == 1
        await recorder.idle.wait()
        await dispatcher.aclose()
    started = [event.source for event in recorder.events if isinstance(event, PointStarted)]
    assert started == [CLOUD, "e1", "e1"]
    assert (meter.open_streams, meter.open_expansions) == (0, 0)


async def test_a_cloud_point_cancelled_before_its_job_ran_is_not_counted_forever() -> None:
    meter = measured(200.0, ttft=0.01)
    async with upstreams(CloudScript(), meter, InProcessEdge("e1")) as shared:
        dispatcher = Dispatcher(
            registry=shared.registry,
            policy=shared.policy,
            cloud=shared.cloud,
            spec=spec(),
            emit=Recorder(),
            overflow=OverflowRule(enabled=True),
            cloud_meter=meter,
        )
        dispatcher.add_point(0, "Alpha")
        assert meter.open_expansions == 1
        await dispatcher.aclose()  # before the job's task ever ran
    assert (meter.open_streams, meter.open_expansions) == (0, 0)
