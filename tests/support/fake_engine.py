"""A fake edge engine: the ``EngineBackend`` seam (``edge_agent.engine.backend``) with no weights.

The edge agent's real routes and its channel run over :class:`FakeBackend`; only the engine is
scripted. Its jobs (:class:`FakeJob`) send, per sequence, two text deltas and then the
sequence's end, in the order a real job sends its events; a subclass scripts other answers by
overriding ``FakeJob._events`` and ``FakeBackend.new_job`` (``tests.gateway.channel_edge`` does).
Python 3.10 imports this too (``tests/edge`` runs there: ``tests/test_edge_py310.py``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from edge_agent.engine import EngineEvent, JobDone, JobSpec, JobStarted, SequenceDone, TokenDelta
from edge_agent.engine.chat_template import Message, RenderedPrompt
from edge_agent.engine.stats import LoadSnapshot


class Renderer:
    """A recognisable prompt, so a test sees the handler rendered through the backend."""

    has_template = True

    def render(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()
    ) -> RenderedPrompt:
        names = "".join(f"[tool:{t['function']['name']}]" for t in tools)
        return RenderedPrompt(names + "|".join(f"{m.role}:{m.content}" for m in messages), False)


class FakeJob:
    """Per sequence: two text deltas, then done; the events a real job sends, in its order.

    Cancelling records when, as the real engine frees the job's cells then; cancelling a
    finished job does nothing (like ``JobHandle``)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.ended = False
        self.cancelled_at: float | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def cancel(self) -> None:
        if not self.ended and self.cancelled_at is None:
            self.cancelled_at = time.monotonic()

    async def __aenter__(self) -> FakeJob:  # not typing.Self: these tests also run on 3.10
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __aiter__(self) -> AsyncIterator[EngineEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[EngineEvent]:
        n = len(self.spec.sequences)
        yield JobStarted("job-fake", prompt_tokens=10 + n, queued_ms=1.5)
        for i in range(n):
            yield TokenDelta(i, f"seq{i} ")
            yield TokenDelta(i, "text")
            yield SequenceDone(i, "stop", f"seq{i} text", 1, 2, -1.0, -0.5, 3.0, 4.0)
        self.ended = True
        yield JobDone(prompt_tokens=10 + n, completion_tokens=2 * n)


# What a FakeBackend's load() reports unless told otherwise: figures a test can recognise after
# the agent rounded them (kv_usage 0.25, 12.35 tokens/s, a mean batch of 2.5).
FIGURES = LoadSnapshot(
    ready=False,
    running_sequences=3,
    queued_sequences=0,
    queued_jobs=0,
    max_sequences=7,
    free_sequence_slots=4,
    kv_cells_total=1000,
    kv_cells_reserved=250,
    decode_tokens_per_second=12.345,
    threads=1,
    tokens_generated=5,
    prefill_tokens=6,
    jobs=0,
    cancellations=0,
    prefix_cache_entries=0,
    prefix_cache_cells=0,
    prefix_cache_hits=0,
    prefix_cache_reused_tokens=0,
    decode_batch_mean=2.499,
)


@dataclass
class FakeBackend:
    """An engine that loads when the test says so (``may_start``) and answers every job from a
    script; ``refuse`` makes ``submit`` raise, as a real engine does for a job it can never run."""

    may_start: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    stopped: bool = False
    refuse: Exception | None = None
    jobs: list[FakeJob] = field(default_factory=list)
    # What load() reports, apart from ``ready`` and the job counts, which are the backend's own.
    figures: LoadSnapshot = FIGURES
    # load() calls: /v1/load, metrics scrapes, a gateway's load queries over a channel.
    load_calls: int = 0

    def start(self) -> None:
        assert self.may_start.wait(timeout=10)
        self.started, self.stopped = True, False

    def stop(self) -> None:
        self.stopped = True

    @property
    def ready(self) -> bool:
        return self.started and not self.stopped

    @property
    def chat(self) -> Renderer:
        return Renderer()

    def load(self) -> LoadSnapshot:
        self.load_calls += 1
        return dataclasses.replace(
            self.figures,
            ready=self.ready,
            jobs=len(self.jobs),
            cancellations=sum(job.cancelled for job in self.jobs),
        )

    def new_job(self, spec: JobSpec) -> FakeJob:
        return FakeJob(spec)

    def submit(self, spec: JobSpec) -> FakeJob:
        if self.refuse is not None:
            raise self.refuse
        job = self.new_job(spec)
        self.jobs.append(job)
        return job
