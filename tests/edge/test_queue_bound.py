"""The edge's bounded job queue: past ``max_queued_jobs`` jobs waiting for the batcher,
``/v1/expand`` answers 429 with Retry-After, and an admitted job frees its place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge_agent.engine import EngineEvent, JobSpec
from edge_agent.settings import EdgeSettings
from tests.edge.test_backend_seam import AUTH, serve, until_ready
from tests.support.fake_engine import FakeBackend, FakeJob

pytestmark = pytest.mark.timeout(10)

EXPAND = {"question": "q", "sketch": ["a"]}


class QueuedJob(FakeJob):
    """A job the batcher admits only when the test says so."""

    def __init__(self, spec: JobSpec, admit: asyncio.Event) -> None:
        super().__init__(spec)
        self._admit = admit

    async def _events(self) -> AsyncIterator[EngineEvent]:
        await self._admit.wait()
        async for event in super()._events():
            yield event


class QueueingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.admit = asyncio.Event()
        self.submitted = asyncio.Event()

    def submit(self, spec: JobSpec) -> FakeJob:
        job = QueuedJob(spec, self.admit)
        self.jobs.append(job)
        self.submitted.set()
        return job


async def test_a_full_queue_answers_429_and_an_admitted_job_frees_its_place() -> None:
    fake = QueueingBackend()
    fake.may_start.set()
    async with serve(fake, max_queued_jobs=1) as client:
        await until_ready(client)
        waiting = asyncio.create_task(client.post("/v1/expand", json=EXPAND, headers=AUTH))
        await fake.submitted.wait()
        refused = await client.post("/v1/expand", json=EXPAND, headers=AUTH)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "server_overloaded"
        assert len(fake.jobs) == 1, "a refused job is never submitted"
        fake.admit.set()
        assert (await waiting).status_code == 200
        # Admitted and finished: the place is free again.
        again = await client.post("/v1/expand", json=EXPAND, headers=AUTH)
        assert again.status_code == 200
        assert "[DONE]" in again.text


async def test_the_queue_bound_defaults_on_and_can_be_lifted() -> None:
    assert EdgeSettings(model="m.gguf").max_queued_jobs == 32
    assert EdgeSettings(model="m.gguf", max_queued_jobs=None).max_queued_jobs is None
