"""Edges joining and leaving a running registry: placement sees it at once, jobs are kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pice_gateway.edges import Edge, EdgeRegistry
from tests.gateway.fakes import CloudScript
from tests.gateway.inprocess import InProcessEdge
from tests.gateway.test_dispatch import EXPECTED, answer, progressive_run, sources, upstreams

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
