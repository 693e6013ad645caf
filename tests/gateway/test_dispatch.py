"""Dispatch and the progressive run against in-process upstreams: no sockets, no servers.

The same behaviours ``test_protocol.py`` shows through HTTP and uvicorn (placement, merge order,
failover, cancellation), here driven directly so that each runs in milliseconds and each failure
happens exactly where the test puts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pice.errors import InvalidRequestError, UpstreamError
from pice.openai_protocol import ChatCompletionRequest
from pice_gateway.cloud_client import CLOUD
from pice_gateway.direct_path import cloud_payload
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.placement import LeastLoadedPolicy
from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.rate import MIN_FINISHED_POINTS
from pice_gateway.progressive import watch
from pice_gateway.progressive.dispatch import Dispatcher
from pice_gateway.progressive.events import (
    DispatchEvent,
    JobEnded,
    PointDelta,
    PointDone,
    PointFailed,
    PointStarted,
    UsageCounted,
)
from pice_gateway.progressive.pipeline import (
    Finished,
    ProgressiveRun,
    TextOut,
    Upstreams,
    Watched,
)
from pice_gateway.progressive.spec import ExpansionSpec
from pice_gateway.settings import GatewaySettings
from pice_gateway.upstream_http import UpstreamClient
from tests.gateway.fakes import OUTLINE, CloudScript, split_words
from tests.gateway.inprocess import InProcessEdge, mock_cloud

pytestmark = pytest.mark.timeout(10)

EXPECTED = (
    "1. **Alpha point**: Body of point 1 from {0}.\n"
    "2. **Beta point**: Body of point 2 from {1}.\n"
    "3. **Gamma point**: Body of point 3 from {2}.\n"
)
CLOUD_EXPECTED = (
    "1. **Alpha point**: Expanded by the cloud.\n"
    "2. **Beta point**: Expanded by the cloud.\n"
    "3. **Gamma point**: Expanded by the cloud.\n"
)


@contextlib.asynccontextmanager
async def upstreams(cloud: CloudScript, *edges: InProcessEdge) -> AsyncIterator[Upstreams]:
    """The shared clients of a run, as the app's lifespan makes them, after one load poll."""
    registry = EdgeRegistry([Edge(edge) for edge in edges], poll_interval=1.0)
    await registry.poll_once()
    async with UpstreamClient("cloud", "http://cloud/v1/", mock_cloud(cloud)) as http:
        yield Upstreams(cloud=http, registry=registry, policy=LeastLoadedPolicy())


def progressive_run(
    shared: Upstreams,
    *,
    model: str = "pice",
    stall_seconds: float = 5.0,
    ensemble: int = 1,
    queue_seconds: float = 120.0,
    # The in-process edges report no decode rate to fit, so by default (as on an unfitted
    # edge) the k rule would give one candidate; these tests are about what k candidates do.
    max_slowdown: float = math.inf,
    watch_events: bool = False,
    stop_cloud_loops: bool = True,
    **body: Any,
) -> ProgressiveRun:
    knobs = {
        "stop_cloud_loops": stop_cloud_loops,
        "edge_stall_seconds": stall_seconds,
        "edge_queue_seconds": queue_seconds,
        "ensemble_candidates": ensemble,
        "ensemble_max_slowdown": max_slowdown,
    }
    settings = GatewaySettings(cloud={"model": "cloud-model"}, progressive=knobs)
    request = ChatCompletionRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": "How to stay healthy?"}]} | body
    )
    return ProgressiveRun(
        shared,
        settings,
        request,
        allow_direct=model == "pice",
        request_id="pice-test",
        watch_events=watch_events,
    )


async def answer(run: ProgressiveRun) -> tuple[list[str], Finished]:
    """Every text piece the client would be sent, and the run's end."""
    await run.start()
    pieces: list[str] = []
    async for event in run.events():
        if isinstance(event, TextOut):
            pieces.append(event.text)
        else:
            return pieces, event
    raise AssertionError("the run ended without Finished")


def sources(finished: Finished) -> list[str | None]:
    return [point.edge for point in finished.report.points]


async def test_points_are_placed_on_edges_and_merged_in_point_order() -> None:
    e1, e2 = InProcessEdge("e1", token_delay=0.001), InProcessEdge("e2", token_delay=0.001)
    async with upstreams(CloudScript(), e1, e2) as shared:
        pieces, finished = await answer(progressive_run(shared))
    assert "".join(pieces) == EXPECTED.format(*sources(finished))
    assert sorted(set(sources(finished))) == ["e1", "e2"], "least-loaded spreads the points"
    # The header of point 1 goes out before any body text.
    assert pieces[0] == "1. **Alpha point**:"
    report = finished.report
    assert report.edge_usage.completion_tokens == 18
    assert report.cloud_usage.completion_tokens == 7
    assert all(point.attempts == [point.edge] for point in report.points)
    assert finished.finish_reason == "stop"
    assert e1.running == e2.running == 0
    assert shared.registry.snapshot()[0].in_flight == 0


async def test_an_edge_failing_mid_point_hands_over_without_repeating_sent_text() -> None:
    bad, good = InProcessEdge("bad", behaviour="die"), InProcessEdge("good")
    async with upstreams(CloudScript(), bad, good) as shared:
        pieces, finished = await answer(progressive_run(shared))
    text = "".join(pieces)
    assert text == EXPECTED.format("good", "good", "good")
    # "Body" of point 1 went out from the bad edge before it died; the good edge's attempt
    # repeats it, and the client is sent only what comes after.
    assert any(piece.strip() == "Body" for piece in pieces)
    assert text.count("Body") == 3
    assert finished.report.points[0].attempts == ["bad", "good"]
    assert bad.jobs, "the bad edge got work"
    assert not shared.registry.snapshot()[0].up, "a broken connection takes the edge down"


async def test_an_error_event_hands_points_over_but_keeps_the_edge_up() -> None:
    bad, good = InProcessEdge("bad", behaviour="error"), InProcessEdge("good")
    async with upstreams(CloudScript(), bad, good) as shared:
        pieces, finished = await answer(progressive_run(shared))
    assert "".join(pieces) == EXPECTED.format("good", "good", "good")
    assert any(point.attempts[0] == "bad" for point in finished.report.points)
    assert shared.registry.snapshot()[0].up


async def test_a_stalled_edge_loses_its_points_and_its_job_is_cancelled() -> None:
    stalled, good = InProcessEdge("stalled", behaviour="stall"), InProcessEdge("good")
    async with upstreams(CloudScript(), stalled, good) as shared:
        started = asyncio.get_running_loop().time()
        pieces, finished = await answer(progressive_run(shared, stall_seconds=0.2))
        elapsed = asyncio.get_running_loop().time() - started
    assert "".join(pieces) == EXPECTED.format("good", "good", "good")
    assert finished.report.points[0].attempts == ["stalled", "good"]
    assert stalled.running == 0
    assert stalled.cancelled == len(stalled.jobs) >= 1
    assert not shared.registry.snapshot()[0].up
    assert 0.2 <= elapsed < 2.0


async def test_a_job_queued_longer_than_the_stall_bound_is_not_a_stall() -> None:
    # The edge admits each job (its ``start`` event) only after 0.3 s, three stall bounds.
    queued = InProcessEdge("queued", start_delay=0.3)
    async with upstreams(CloudScript(), queued) as shared:
        pieces, finished = await answer(progressive_run(shared, stall_seconds=0.1))
    assert "".join(pieces) == EXPECTED.format("queued", "queued", "queued")
    assert all(point.attempts == ["queued"] for point in finished.report.points)
    sent = sorted(point for job in queued.jobs for point in job.point_indices())
    assert sent == [0, 1, 2], "no point was given up and sent again"
    assert shared.registry.snapshot()[0].up


async def test_a_job_that_stalls_after_a_long_queue_still_fails_over() -> None:
    stalled = InProcessEdge("stalled", behaviour="stall", start_delay=0.3)
    good = InProcessEdge("good")
    async with upstreams(CloudScript(), stalled, good) as shared:
        pieces, finished = await answer(progressive_run(shared, stall_seconds=0.1))
    assert "".join(pieces) == EXPECTED.format("good", "good", "good")
    assert finished.report.points[0].attempts == ["stalled", "good"]
    assert stalled.cancelled == len(stalled.jobs) >= 1
    assert not shared.registry.snapshot()[0].up


async def test_a_job_never_admitted_within_the_queue_bound_moves_but_the_edge_stays_up() -> None:
    full, good = InProcessEdge("full", start_delay=5.0), InProcessEdge("good")
    async with upstreams(CloudScript(), full, good) as shared:
        pieces, finished = await answer(
            progressive_run(shared, stall_seconds=0.05, queue_seconds=0.2)
        )
    assert "".join(pieces) == EXPECTED.format("good", "good", "good")
    assert finished.report.points[0].attempts == ["full", "good"]
    assert full.cancelled == len(full.jobs) >= 1
    assert shared.registry.snapshot()[0].up, "a full edge is not a dead one"


async def test_with_every_edge_down_the_cloud_expands_every_point() -> None:
    cloud = CloudScript()
    down = InProcessEdge("down", reachable=False)
    async with upstreams(cloud, down) as shared:
        assert not shared.registry.any_up()
        pieces, finished = await answer(progressive_run(shared, model="pice-progressive"))
    assert "".join(pieces) == CLOUD_EXPECTED
    assert sources(finished) == [CLOUD] * 3
    assert down.jobs == []
    expansions = [r for r in cloud.requests if "Outline of the answer" in str(r["messages"])]
    assert len(expansions) == 3
    assert finished.report.cloud_usage.completion_tokens == 7 + 3 * 4


async def test_when_the_only_edge_fails_the_cloud_takes_its_points() -> None:
    bad = InProcessEdge("bad", behaviour="die")
    async with upstreams(CloudScript(), bad) as shared:
        pieces, finished = await answer(progressive_run(shared))
    text = "".join(pieces)
    assert sources(finished) == [CLOUD] * 3
    assert text.count("Expanded by the cloud.") == 3
    # Point 1's "Body" was sent before the edge died; the cloud's text follows it.
    assert text.startswith("1. **Alpha point**: Body … Expanded by the cloud.\n")


async def test_a_client_that_leaves_cancels_the_sketch_and_every_edge_job() -> None:
    cloud = CloudScript(token_delay=0.1)  # the sketch is still being written when it leaves
    slow = InProcessEdge("slow", token_delay=0.05)
    async with upstreams(cloud, slow) as shared:
        run = progressive_run(shared)
        await run.start()
        body_seen = asyncio.Event()

        async def client() -> None:
            async for event in run.events():
                if isinstance(event, TextOut) and "Body" in event.text:
                    body_seen.set()

        reader = asyncio.create_task(client())
        await body_seen.wait()
        assert slow.running > 0
        reader.cancel()  # what sse-starlette does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await reader
        jobs = len(slow.jobs)
        assert slow.running == 0
        assert slow.cancelled == jobs
        assert len(run.report.points) < 3, "the sketch was cut short"
        assert cloud.closed == len(cloud.requests) == 1
        await asyncio.sleep(0.2)
        assert len(slow.jobs) == jobs, "no job starts after the client left"


async def test_a_cloud_that_fails_a_point_fails_the_request() -> None:
    cloud = CloudScript()
    bad = InProcessEdge("bad", behaviour="die")
    async with upstreams(cloud, bad) as shared:
        run = progressive_run(shared)
        await run.start()
        cloud.fail_status = 500  # the sketch is already streaming; cloud expansions fail
        with pytest.raises(UpstreamError, match="cloud answered 500"):
            async for _ in run.events():
                pass
    assert bad.running == 0


# -- the dispatcher alone ---------------------------------------------------------------------


def spec(**fields: Any) -> ExpansionSpec:
    values: dict[str, Any] = {
        "request_id": "r",
        "messages": [{"role": "user", "content": "q"}],
        "max_tokens": 16,
        "temperature": 0.0,
        "top_p": None,
        "seed": None,
        "stall_seconds": 5.0,
        "cloud_model": "cloud-model",
    }
    return ExpansionSpec(**(values | fields))


class Recorder:
    """The run's side of a dispatcher: keeps its events, and tells when it went idle."""

    def __init__(self) -> None:
        self.events: list[DispatchEvent] = []
        self.idle = asyncio.Event()
        self.dispatcher: Dispatcher | None = None

    def __call__(self, event: DispatchEvent) -> None:
        self.events.append(event)
        if isinstance(event, JobEnded) and self.dispatcher is not None and self.dispatcher.idle:
            self.idle.set()


async def dispatch_points(
    shared: Upstreams, expansion: ExpansionSpec, titles: list[str]
) -> list[DispatchEvent]:
    recorder = Recorder()
    dispatcher = Dispatcher(
        registry=shared.registry,
        policy=shared.policy,
        cloud=shared.cloud,
        spec=expansion,
        emit=recorder,
    )
    recorder.dispatcher = dispatcher
    for index, title in enumerate(titles):
        dispatcher.add_point(index, title)
    assert not dispatcher.idle
    await recorder.idle.wait()
    return recorder.events


async def dispatch_one_point(shared: Upstreams, expansion: ExpansionSpec) -> list[DispatchEvent]:
    return await dispatch_points(shared, expansion, ["Alpha"])


async def test_points_that_finish_teach_the_registry_how_fast_their_edge_is() -> None:
    """Each point placed alone on a free slot is one measurement of its edge's rate; once
    enough have finished, the estimates use that fit instead of the reported decode rate."""
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), edge) as shared:
        titles = [f"Point {i}" for i in range(MIN_FINISHED_POINTS)]
        await dispatch_points(shared, spec(max_points=MIN_FINISHED_POINTS), titles[:-1])
        assert shared.registry.snapshot()[0].rate_source != "points"
        events = await dispatch_points(shared, spec(max_points=1), titles[-1:])
        status = shared.registry.snapshot()[0]
    assert status.rate_source == "points"
    assert status.rate is not None
    assert status.rate.single > 0
    # The estimate made with it says so.
    started = [e for e in events if isinstance(e, PointStarted)]
    assert started[0].estimate is not None


async def test_dispatcher_reports_one_points_life_in_order() -> None:
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), edge) as shared:
        events = await dispatch_one_point(shared, spec())
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["PointStarted"] + ["PointDelta"] * 6 + [
        "PointDone",
        "UsageCounted",
        "JobEnded",
    ]
    started = events[0]
    assert isinstance(started, PointStarted)
    assert dataclasses.replace(started, estimate=None) == PointStarted(0, "e1")
    # A placement on an edge carries its expected finish there (the eft estimate) and what it
    # came from: the first point on an idle edge waits for no slot and joins a batch of one.
    finish = started.estimate
    assert finish is not None
    assert finish.seconds > 0
    assert finish.busy == 0
    assert finish.wait == 0.0
    assert finish.seconds == pytest.approx(finish.rtt + finish.wait + finish.decode)
    assert finish.decode == pytest.approx(finish.tokens / finish.single_rate)
    done = events[7]
    assert isinstance(done, PointDone)
    assert (done.point, done.source, done.candidate, done.tokens) == (0, "e1", 0, 6)
    assert done.text == "Body of point 1 from e1."
    usage = events[8]
    assert isinstance(usage, UsageCounted)
    assert not usage.estimated
    assert edge.jobs[0].wire() == {
        "messages": [{"role": "user", "content": "q"}],
        "sketch": ["Alpha"],
        "points": [0],
        "request_id": "r",
        "max_tokens": 16,
        "temperature": 0.0,
    }


async def test_several_candidates_of_a_point_arrive_labelled_never_mixed() -> None:
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), edge) as shared:
        events = await dispatch_points(
            shared, spec(candidates=2, candidate_max_slowdown=math.inf), ["Alpha", "Beta"]
        )
        assert shared.registry.snapshot()[0].in_flight == 0
    # The first point streams live with one candidate; the second gets the ensemble's two.
    assert [(job.points, job.candidates) for job in edge.jobs] == [([0], 1), ([1], 2)]
    assert edge.jobs[1].candidate_temperature == 0.7
    assert "candidate_temperature" not in edge.jobs[0].wire()
    assert [e.candidates for e in events if isinstance(e, PointStarted)] == [1, 2]
    texts = {0: "", 1: ""}
    for event in events:
        if isinstance(event, PointDelta) and event.point == 1:
            texts[event.candidate] += event.text
    assert texts == {0: "Body of point 2 from e1.", 1: "BODY OF POINT 2 FROM E1."}
    done = [event for event in events if isinstance(event, PointDone) and event.point == 1]
    assert [event.candidate for event in done] == [0, 1]
    assert isinstance(events[-1], JobEnded)


# -- the ensemble through the whole run ------------------------------------------------------

# Candidate 0 (greedy, most confident) drifts off topic; 1 and 2 agree, and 1 is surer than 2.
VARIANTS = [
    ("Weather in {edge} is sunny today.", -0.2),
    ("Walk daily and drink water for point {point}.", -0.8),
    ("Walk daily and drink plenty of water for point {point}.", -0.9),
]
ENSEMBLE_EXPECTED = (
    "1. **Alpha point**: Weather in e1 is sunny today.\n"
    "2. **Beta point**: Walk daily and drink water for point 2.\n"
    "3. **Gamma point**: Walk daily and drink water for point 3.\n"
)


async def test_later_points_show_the_ensembles_choice_and_report_every_candidate() -> None:
    edge = InProcessEdge("e1", variants=VARIANTS)
    async with upstreams(CloudScript(), edge) as shared:
        pieces, finished = await answer(progressive_run(shared, ensemble=3))
        assert shared.registry.snapshot()[0].in_flight == 0
    text = "".join(pieces)
    assert text == ENSEMBLE_EXPECTED
    # Never a candidate that lost, never the winner twice.
    assert "plenty" not in text
    assert text.count("Walk daily") == 2
    assert edge.jobs[0].points == [0]
    assert [job.candidates for job in edge.jobs] == [1] + [3] * (len(edge.jobs) - 1)
    first, *later = finished.report.points
    assert (first.winner, first.candidates) == (None, [])
    for point in later:
        assert point.winner == 1
        assert [c.candidate for c in point.candidates] == [0, 1, 2]
        assert {c.edge for c in point.candidates} == {"e1"}
        scores = [c.score for c in point.candidates]
        assert scores[1] > scores[2] > scores[0]
        assert [c.logprob_mean for c in point.candidates] == [-0.2, -0.8, -0.9]
        assert point.candidates[0].agreement < point.candidates[1].agreement
        assert point.tokens == point.candidates[1].tokens
        assert point.finish_reason == "stop"
    # Every candidate decoded is paid for.
    assert finished.report.edge_usage.total_tokens > 0


async def test_an_edge_without_spare_slots_gets_one_candidate_per_point() -> None:
    edge = InProcessEdge("e1", variants=VARIANTS, free_slots=2)
    async with upstreams(CloudScript(), edge) as shared:
        pieces, finished = await answer(progressive_run(shared, ensemble=3))
    assert {job.candidates for job in edge.jobs} == {1}
    assert "".join(pieces).count("Weather in e1") == 3
    assert all(p.winner is None and not p.candidates for p in finished.report.points)


async def test_the_ensemble_is_off_by_default_and_a_request_can_turn_it_on() -> None:
    edge = InProcessEdge("e1", variants=VARIANTS)
    async with upstreams(CloudScript(), edge) as shared:
        await answer(progressive_run(shared))
        assert {job.candidates for job in edge.jobs} == {1}
        await answer(progressive_run(shared, pice={"candidates": 3}))
        assert max(job.candidates for job in edge.jobs) == 3


async def test_an_edge_with_no_measured_rate_decodes_one_candidate_by_default() -> None:
    edge = InProcessEdge("e1", variants=VARIANTS)
    async with upstreams(CloudScript(), edge) as shared:
        budget = GatewaySettings().progressive.ensemble_max_slowdown
        await answer(progressive_run(shared, max_slowdown=budget, pice={"candidates": 3}))
        assert {job.candidates for job in edge.jobs} == {1}


async def test_a_request_can_turn_the_ensemble_off_and_a_bad_value_is_refused() -> None:
    edge = InProcessEdge("e1", variants=VARIANTS)
    async with upstreams(CloudScript(), edge) as shared:
        _, finished = await answer(progressive_run(shared, ensemble=3, pice={"candidates": 1}))
        assert {job.candidates for job in edge.jobs} == {1}
        assert all(p.winner is None for p in finished.report.points)
        with pytest.raises(InvalidRequestError, match=r"pice\.candidates"):
            progressive_run(shared, pice={"candidates": 0})


def test_the_pice_extension_is_never_forwarded_to_the_cloud() -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "pice", "messages": [{"role": "user", "content": "q"}], "user": "u"}
        | {"pice": {"candidates": 2}}
    )
    payload = cloud_payload(request, "cloud-model")
    assert "pice" not in payload
    assert payload["user"] == "u", "other unknown fields are still forwarded"


async def test_point_words_reach_the_edges_and_the_cloud_with_the_tokens_they_take() -> None:
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(), edge) as shared:
        _, plain = await answer(progressive_run(shared))
        assert {job.point_words for job in edge.jobs} == {None}
        assert all("point_words" not in job.wire() for job in edge.jobs), "older agents: unsent"
        assert {job.max_tokens for job in edge.jobs} == {96}
        assert plain.report.point_words is None
        edge.jobs.clear()
        _, longer = await answer(progressive_run(shared, pice={"point_words": 80}))
    assert {job.point_words for job in edge.jobs} == {80}
    assert {job.max_tokens for job in edge.jobs} == {192}, "80 words at 2.4 tokens a word"
    assert longer.report.point_words == 80
    cloud = CloudScript()
    async with upstreams(cloud, InProcessEdge("down", reachable=False)) as shared:
        await answer(progressive_run(shared, model="pice-progressive", pice={"point_words": 60}))
    expansions = [str(r["messages"]) for r in cloud.requests if "Outline of the answer" in str(r)]
    assert len(expansions) == 3
    assert all("in at most 60 words" in text for text in expansions)
    assert all(r["max_tokens"] == 144 for r in cloud.requests if "Outline of the answer" in str(r))


FRAMED_SKETCH = "Health takes a few habits:\n" + OUTLINE + "Keep them up and it adds up.\n"


async def test_a_framed_answer_opens_before_point_1_and_closes_after_the_last_point() -> None:
    edge = InProcessEdge("e1", token_delay=0.001)
    cloud = CloudScript(sketch=FRAMED_SKETCH)
    async with upstreams(cloud, edge) as shared:
        pieces, finished = await answer(
            progressive_run(shared, model="pice-progressive", pice={"frame": True})
        )
        _, default = await answer(progressive_run(shared, model="pice-progressive"))
        plain_pieces, plain = await answer(
            progressive_run(shared, model="pice-progressive", pice={"frame": False})
        )
    text = "".join(pieces)
    assert pieces[0] == "Health takes a few habits:\n\n", "the opening first, whole"
    assert text == (
        "Health takes a few habits:\n\n"
        + EXPECTED.format("e1", "e1", "e1")
        + "\nKeep them up and it adds up."
    )
    sketch = finished.report.sketch
    assert sketch is not None
    assert (sketch.frame, sketch.opening, sketch.closing) == (True, True, True)
    assert "opens the answer" in str(cloud.requests[0]["messages"][0])
    # On by default (no sketcher adapter is configured).
    assert default.report.sketch is not None
    assert (default.report.sketch.frame, default.report.sketch.closing) == (True, True)
    assert "opens the answer" in str(cloud.requests[1]["messages"][0])
    # Turned off: the same sketch's frame is not asked for, and not shown.
    assert plain.report.sketch is not None
    assert not plain.report.sketch.frame
    assert "opens the answer" not in str(cloud.requests[-1]["messages"][0])
    assert "".join(plain_pieces) == EXPECTED.format("e1", "e1", "e1")


SECTIONED_SKETCH = (
    "Health takes a few habits:\n1. Alpha point\n2. Beta point\n"
    "Some things to avoid:\n1. Gamma point\nKeep them up and it adds up.\n"
)


async def test_a_framed_sketch_with_a_second_list_shows_its_heading_and_tells_the_edges() -> None:
    edge = InProcessEdge("e1", token_delay=0.001)
    async with upstreams(CloudScript(sketch=SECTIONED_SKETCH), edge) as shared:
        pieces, finished = await answer(progressive_run(shared, model="pice-progressive"))
    first, second, third = EXPECTED.format("e1", "e1", "e1").splitlines(keepends=True)
    assert "".join(pieces) == (
        "Health takes a few habits:\n\n"
        + first
        + second
        + "\nSome things to avoid:\n\n"
        + third
        + "\nKeep them up and it adds up."
    ), "the heading is not the closing, and the third point follows it"
    assert [p.section for p in finished.report.points] == [None, None, "Some things to avoid:"]
    assert [p.title for p in finished.report.points][2] == "Gamma point"
    # The edges read the third title with its heading: alone, it would be ambiguous.
    outlines = {tuple(job.sketch) for job in edge.jobs}
    assert ("Alpha point", "Beta point", "Some things to avoid: Gamma point") in outlines


async def test_a_watched_run_names_each_points_section() -> None:
    edge = InProcessEdge("e1")
    async with upstreams(CloudScript(sketch=SECTIONED_SKETCH), edge) as shared:
        run = progressive_run(shared, model="pice-progressive", watch_events=True)
        await run.start()
        found = [
            (event.event.title, event.event.section)
            async for event in run.events()
            if isinstance(event, Watched) and isinstance(event.event, watch.PointFound)
        ]
    assert found == [
        ("Alpha point", None),
        ("Beta point", None),
        ("Gamma point", "Some things to avoid:"),
    ]


PROSE_SKETCH = "If it had never been invented, we would read more.\n\nAnd we would walk more.\n"


async def test_a_framed_sketch_that_turns_to_prose_is_answered_by_the_cloud_itself() -> None:
    edge = InProcessEdge("e1")
    cloud = CloudScript(sketch=PROSE_SKETCH, answer="The cloud's own whole answer.")
    async with upstreams(cloud, edge) as shared:
        pieces, finished = await answer(
            progressive_run(shared, model="pice-progressive", pice={"frame": True})
        )
    assert "".join(pieces) == "The cloud's own whole answer.", "nothing of the sketch is shown"
    assert (finished.report.mode, finished.report.reason) == ("cloud", "sketch_prose")
    assert finished.finish_reason == "stop"
    assert not edge.jobs
    sketch_request, answer_request = cloud.requests
    assert "opens the answer" in str(sketch_request["messages"][0])
    # The user's own request, as cloud-only sends it: no sketch prompt, no pice object.
    assert answer_request["messages"] == [{"role": "user", "content": "How to stay healthy?"}]
    assert answer_request["model"] == "cloud-model"
    assert "pice" not in answer_request
    # The cloud's usage counts both: the sketch read up to the prose's second line, and the
    # answer (one fake token a word: five words).
    usage = finished.report.cloud_usage
    assert usage.completion_tokens >= 5 + len(PROSE_SKETCH.split("\n")[0].split())
    # Unframed, the same prose sketch is still the answer itself (the format-ignoring fallback).
    cloud = CloudScript(sketch=PROSE_SKETCH, answer="The cloud's own whole answer.")
    async with upstreams(cloud, InProcessEdge("e1")) as shared:
        pieces, finished = await answer(
            progressive_run(shared, model="pice-progressive", pice={"frame": False})
        )
    assert "".join(pieces).startswith("If it had never been invented")
    assert (finished.report.mode, finished.report.reason) == ("cloud", "direct")
    assert len(cloud.requests) == 1


LOOPING_ANSWER = "Good morning, crew! Remember our mission.\n" + (
    "We are not just looking for treasure, we are looking for a way to make a difference in "
    "the world. We are looking for a way to make a positive impact on the lives of others.\n"
)


async def test_the_clouds_whole_answer_stops_where_it_repeats_a_paragraph() -> None:
    paragraph = LOOPING_ANSWER.split("\n", 1)[1]
    cloud = CloudScript(sketch=PROSE_SKETCH, answer=LOOPING_ANSWER + paragraph * 18)
    async with upstreams(cloud, InProcessEdge("e1")) as shared:
        pieces, finished = await answer(
            progressive_run(shared, model="pice-progressive", pice={"frame": True})
        )
        answered = len(split_words(cloud.answer))
    assert "".join(pieces) == LOOPING_ANSWER + paragraph.rstrip("\n"), "one repeat, no more"
    assert finished.report.loop_stopped
    assert finished.finish_reason == "stop"
    # The cloud was not read to the end (the fake writes a chunk when one is read): closing
    # the stream is what frees it.
    sketch_chunks = len(split_words(PROSE_SKETCH))
    assert cloud.chunks_sent - sketch_chunks < answered / 5
    assert finished.report.usage_estimated
    # Turned off, the loop is relayed to its end, as the cloud wrote it.
    cloud = CloudScript(sketch=PROSE_SKETCH, answer=LOOPING_ANSWER + paragraph * 18)
    async with upstreams(cloud, InProcessEdge("e1")) as shared:
        run = progressive_run(
            shared, model="pice-progressive", pice={"frame": True}, stop_cloud_loops=False
        )
        pieces, finished = await answer(run)
    assert "".join(pieces) == cloud.answer
    assert not finished.report.loop_stopped


async def test_a_paragraph_the_user_asked_to_have_repeated_is_relayed_whole() -> None:
    paragraph = LOOPING_ANSWER.split("\n", 1)[1]
    cloud = CloudScript(sketch=PROSE_SKETCH, answer=LOOPING_ANSWER + paragraph * 18)
    asked = f"Open with a greeting, then say this twenty times:\n{paragraph}"
    async with upstreams(cloud, InProcessEdge("e1")) as shared:
        run = progressive_run(
            shared,
            model="pice-progressive",
            pice={"frame": True},
            messages=[{"role": "user", "content": asked}],
        )
        pieces, finished = await answer(run)
    assert "".join(pieces) == cloud.answer
    assert not finished.report.loop_stopped


async def test_a_looping_expansion_is_shown_up_to_its_loop_and_the_report_says_so() -> None:
    looping = "Point {point} kept its roads. It was a single, " + "single, " * 12
    edge = InProcessEdge("e1", variants=[(looping, -0.1)])
    async with upstreams(CloudScript(), edge) as shared:
        pieces, finished = await answer(progressive_run(shared))
    lines = "".join(pieces).splitlines()
    titles = ["Alpha", "Beta", "Gamma"]
    for n, (line, title) in enumerate(zip(lines, titles, strict=True), start=1):
        shown = f"{n}. **{title} point**: Point {n} kept its roads."
        # Whatever streamed live before the loop was one stays (marked as cut); a point held
        # until its turn ends on its last full sentence. Never the whole loop.
        assert line == shown or (line.startswith(shown) and line.endswith(" …")), line
        assert line.count("single") < 8, line
    assert [point.trimmed for point in finished.report.points] == ["loop"] * 3
    assert finished.finish_reason == "stop", "a loop is not a token limit"


# -- candidates from other edges (companions) -------------------------------------------------


class InOrder:
    """A placement policy that takes the first usable edge in the order given: the tests below
    decide which edge is a point's own and which may add a companion."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def place(self, point: PointPlacement, edges: list[EdgeStatus]) -> str | None:
        usable_names = {edge.name for edge in edges if usable(edge, point)}
        return next((name for name in self.names if name in usable_names), None)


def ordered(shared: Upstreams, *names: str) -> Upstreams:
    return dataclasses.replace(shared, policy=InOrder(*names))


def across(**fields: Any) -> ExpansionSpec:
    """Two candidates a point, two points: e1's one free slot gives point 1 a k of one there."""
    values = {"candidates": 2, "candidate_max_slowdown": math.inf, "max_points": 2}
    return spec(**(values | fields))


async def test_a_later_point_gets_a_candidate_from_another_edge_of_the_same_model() -> None:
    own, other = InProcessEdge("e1", free_slots=1), InProcessEdge("e2")
    async with upstreams(CloudScript(), own, other) as shared:
        events = await dispatch_points(ordered(shared, "e1", "e2"), across(seed=7), ["A", "B"])
        assert [s.in_flight for s in shared.registry.snapshot()] == [0, 0]
    assert [(job.points, job.candidates) for job in own.jobs] == [([0], 1), ([1], 1)]
    # The companion: one point, one candidate, sampled as candidate 1 would be on e1.
    (companion,) = other.jobs
    assert (companion.points, companion.candidates) == ([1], 1)
    assert (companion.temperature, companion.seed) == (0.7, 8)
    assert (own.jobs[1].temperature, own.jobs[1].seed) == (0.0, 7)
    started = [e for e in events if isinstance(e, PointStarted)]
    assert [(e.point, e.source, e.candidates) for e in started] == [(0, "e1", 1), (1, "e1", 2)]
    done = [e for e in events if isinstance(e, PointDone) and e.point == 1]
    assert sorted((e.candidate, e.source, e.model) for e in done) == [
        (0, "e1", "fake"),
        (1, "e2", "fake"),
    ]
    companion_text = "".join(
        e.text for e in events if isinstance(e, PointDelta) and e.point == 1 and e.candidate == 1
    )
    assert companion_text == "Body of point 2 from e2."


async def test_a_companion_on_another_model_decodes_as_the_request_asks() -> None:
    own, other = InProcessEdge("e1", free_slots=1), InProcessEdge("e2", model="other")
    async with upstreams(CloudScript(), own, other) as shared:
        events = await dispatch_points(ordered(shared, "e1", "e2"), across(seed=7), ["A", "B"])
    (companion,) = other.jobs
    assert (companion.temperature, companion.seed) == (0.0, 7)
    done = {e.source: e.model for e in events if isinstance(e, PointDone) and e.point == 1}
    assert done == {"e1": "fake", "e2": "other"}


async def test_no_companion_when_turned_off_or_the_own_edge_has_room() -> None:
    own, other = InProcessEdge("e1", free_slots=1), InProcessEdge("e2")
    async with upstreams(CloudScript(), own, other) as shared:
        await dispatch_points(
            ordered(shared, "e1", "e2"), across(candidate_across_edges=False), ["A", "B"]
        )
        assert other.jobs == []
        roomy = InProcessEdge("e3")
    async with upstreams(CloudScript(), roomy, other) as shared:
        await dispatch_points(ordered(shared, "e3", "e2"), across(), ["A", "B"])
        assert [job.candidates for job in roomy.jobs] == [1, 2]
        assert other.jobs == []


async def test_a_failed_companion_is_reported_failed_and_the_point_finishes_without_it() -> None:
    own, other = InProcessEdge("e1", free_slots=1), InProcessEdge("e2", behaviour="die")
    async with upstreams(CloudScript(), own, other) as shared:
        events = await dispatch_points(ordered(shared, "e1", "e2"), across(), ["A", "B"])
        assert [s.in_flight for s in shared.registry.snapshot()] == [0, 0]
        assert not shared.registry.snapshot()[1].up  # its connection broke
    done = [e for e in events if isinstance(e, PointDone) and e.point == 1]
    assert sorted((e.candidate, e.source, e.finish_reason) for e in done) == [
        (0, "e1", "stop"),
        (1, "e2", "error"),
    ]
    # Never retried, and the point itself never failed over.
    assert len(other.jobs) == 1
    assert not [e for e in events if isinstance(e, PointFailed)]


async def test_when_the_points_own_edge_fails_its_companion_is_cancelled_with_it() -> None:
    own = InProcessEdge("e1", free_slots=1, behaviour="die")
    other = InProcessEdge("e2", token_delay=0.05)  # still decoding when e1 breaks
    async with upstreams(CloudScript(), own, other) as shared:
        events = await dispatch_points(ordered(shared, "e1", "e2"), across(), ["A", "B"])
        assert [s.in_flight for s in shared.registry.snapshot()] == [0, 0]
    # The companion (one candidate, sampled) was sent, then closed with the failed attempt.
    sent = [(j.points, j.candidates, j.temperature) for j in other.jobs]
    assert sent[0] == ([1], 1, 0.7)
    assert other.running == 0
    failed = [(e.point, e.source) for e in events if isinstance(e, PointFailed)]
    assert (1, "e1") in failed
    # The retry runs on e2, the only edge left, with two candidates of its own; the dropped
    # companion's candidate never reaches the run (it would be a third body of point 2).
    done = [e for e in events if isinstance(e, PointDone) and e.point == 1]
    assert sorted((e.candidate, e.source, e.text) for e in done) == [
        (0, "e2", "Body of point 2 from e2."),
        (1, "e2", "BODY OF POINT 2 FROM E2."),
    ]
    first_failure = next(i for i, e in enumerate(events) if isinstance(e, PointFailed))
    assert all(events.index(e) > first_failure for e in done)


async def test_the_run_chooses_across_edges_without_comparing_two_models_logprobs() -> None:
    # e1's greedy body drifts off topic and is very sure of itself; e2 (another model) stays on
    # the point. Their log-probabilities are not comparable, so relevance decides.
    own = InProcessEdge("e1", free_slots=1, variants=[("Weather in {edge} is sunny today.", -0.05)])
    other = InProcessEdge(
        "e2", model="other", variants=[("Walk daily and drink water for point {point}.", -2.0)]
    )
    async with upstreams(CloudScript(), own, other) as shared:
        pieces, finished = await answer(
            progressive_run(ordered(shared, "e1", "e2"), ensemble=2, max_tokens=600)
        )
        assert [s.in_flight for s in shared.registry.snapshot()] == [0, 0]
    text = "".join(pieces)
    assert text.startswith("1. **Alpha point**: Weather in e1 is sunny today.\n")
    assert "2. **Beta point**: Walk daily and drink water for point 2.\n" in text
    first, *later = finished.report.points
    assert first.candidates == []
    for point in later:
        assert point.winner == 1
        assert [(c.candidate, c.edge) for c in point.candidates] == [(0, "e1"), (1, "e2")]
        assert point.edge == "e2"


async def test_a_client_that_leaves_cancels_the_companions_too() -> None:
    # Point 2's own edge has one slot; its second candidate runs on e2, slowly.
    own = InProcessEdge("e1", free_slots=1, token_delay=0.05)
    other = InProcessEdge("e2", token_delay=0.2)
    async with upstreams(CloudScript(), own, other) as shared:
        run = progressive_run(ordered(shared, "e1", "e2"), ensemble=2, max_tokens=600)
        await run.start()
        left = asyncio.Event()

        async def client() -> None:
            async for _ in run.events():
                if other.running:
                    left.set()

        reader = asyncio.create_task(client())
        await asyncio.wait_for(left.wait(), 5)
        companions = len(other.jobs)
        assert [(job.candidates, job.temperature) for job in other.jobs] == [(1, 0.7)] * companions
        reader.cancel()  # the client disconnects while the companion decodes
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert (own.running, other.running) == (0, 0)
        assert other.cancelled == companions
        assert [s.in_flight for s in shared.registry.snapshot()] == [0, 0]
        await asyncio.sleep(0.3)
        assert len(other.jobs) == companions, "no companion starts after the client left"
