"""Edges joining and leaving a running registry: placement sees it at once, jobs are kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pice.edge_protocol import LoadResponse
from pice_gateway.edge_client import HttpEdgeClient
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.settings import EdgeEndpoint
from pice_gateway.upstream_http import Timeouts
from tests.gateway.fakes import CloudScript
from tests.gateway.inprocess import InProcessEdge
from tests.gateway.test_dispatch import EXPECTED, answer, progressive_run, sources, upstreams
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(10)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def test_a_joined_edge_is_placed_on_and_a_left_one_is_not() -> None:
    first = InProcessEdge("first", token_delay=0.001)
    async with upstreams(CloudScript(), first) as shared:
        registry = shared.registry
        late = Edge(InProcessEdge("late", token_delay=0.001))
        registry.join(late)
        await registry.poll_once()
        assert [status.name for status in registry.snapshot()] == ["first", "late"]
        _, finished = await answer(progressive_run(shared))
        assert set(sources(finished)) == {"first", "late"}

        registry.leave("first")
        assert "first" not in registry
        await asyncio.sleep(0)
        assert first.closed, "an idle edge that leaves is closed at once"
        _, finished = await answer(progressive_run(shared))
        assert set(sources(finished)) == {"late"}, "placement never sees a departed edge"


async def test_an_edge_leaving_mid_job_finishes_its_points_and_is_closed_after() -> None:
    slow = InProcessEdge("slow", token_delay=0.05)
    async with upstreams(CloudScript(), slow) as shared:
        registry = shared.registry
        run = progressive_run(shared)
        task = asyncio.create_task(answer(run))
        # Every point placed first (a loaded CI machine once read points 2 and 3 of the
        # sketch only after the edge had left: they went to the cloud, rightly).
        await _until(lambda: sum(len(job.point_indices()) for job in slow.jobs) == 3)
        assert slow.running > 0, "left mid-job"
        registry.leave("slow")
        assert registry.snapshot() == []
        assert not slow.closed, "a departed edge keeps its client while its jobs run"
        pieces, finished = await task
        assert "".join(pieces) == EXPECTED.format(*sources(finished))
        assert set(sources(finished)) == {"slow"}
        # The close is scheduled when the last job releases the edge.
        await _until(lambda: slow.closed)


async def test_rejoining_under_the_same_name_replaces_the_old_client() -> None:
    old, new = InProcessEdge("e"), InProcessEdge("e")
    registry = EdgeRegistry([Edge(old)], poll_interval=1.0)
    registry.join(Edge(new))
    assert registry.client("e") is new
    await asyncio.sleep(0)
    assert old.closed
    registry.release("gone", 1)  # releasing an edge nobody knows is harmless
    registry.mark_down("gone", "test")
    await registry.aclose()
    assert new.closed


class _BrokenOnce(InProcessEdge):
    """An edge whose first load poll raises what no poll expects (a bug, not a failure)."""

    polls: int = 0

    async def load(self) -> LoadResponse:
        self.polls += 1
        if self.polls == 1:
            raise RuntimeError("a bug in one poll")
        return await super().load()


async def test_a_poll_that_raises_does_not_stop_the_poller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = _BrokenOnce("broken")
    registry = EdgeRegistry([Edge(broken)], poll_interval=0.01)
    poller = asyncio.create_task(registry.run_poller())
    try:
        await _until(lambda: broken.polls >= 3)
        assert not poller.done()
        assert registry.readiness() == {"broken": True}, "the next polls still record loads"
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await registry.aclose()
    assert "edge poll failed; polling continues" in caplog.text


async def test_an_edge_closed_while_its_poll_is_on_the_way_is_marked_down() -> None:
    """The race of a fleet's churn: ``leave`` closes an idle edge's client while the poller,
    holding a copy of the edge list, has yet to send that edge's request."""
    endpoint = EdgeEndpoint(name="gone", url=f"http://127.0.0.1:{free_port()}")
    edge = Edge(HttpEdgeClient.connect(endpoint, Timeouts(connect=1.0, read=1.0, pool=1.0)))
    registry = EdgeRegistry([edge], poll_interval=1.0)
    await registry.poll_once()  # its connection pool is made (nobody listens: down)
    edge.up = True
    await edge.client.aclose()
    await registry.poll_once()  # raised RuntimeError("Session is closed") before
    assert not edge.up
    await registry.aclose()
