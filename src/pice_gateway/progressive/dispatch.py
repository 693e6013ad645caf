"""Pipelined dispatch of sketch points to edges, with failover to other edges and the cloud.

Batching versus pipelining: an edge expands every point of one ``/v1/expand`` job over one
shared, once-prefilled prefix, so points of a request that go to the same edge should share a
job; but waiting for more points delays the first one. Each edge therefore has a *lane*: the
first point placed on an idle lane goes out at once, and points placed on it while that job is
being set up (request sent, ``start`` event not yet received: queueing and prefill) wait and
leave together as the next job when it starts. No fixed batching window is needed: with a slow
cloud (a CPU sketch writes a line every ~0.5 s) each point leaves immediately, which is what
keeps an otherwise idle edge busy; with a fast cloud (vLLM on a GPU writes lines every few
milliseconds) lines pile up behind the first job's setup and go out as one batch. Sequences of
different jobs still share every decode step on the edge; only the prefix prefill is repeated.

Failover: a job that fails (connection error, error status or event, a point cancelled, or no
event for ``edge_stall_seconds``) marks its edge down and gives each unfinished point back to
the scheduler, excluding every edge that already failed that point; when no edge is left, the
cloud expands the point itself. Only a failure of the cloud fails the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from pice.edge_protocol import (
    DeltaEvent,
    DoneEvent,
    ExpandRequest,
    PointDoneEvent,
    StartEvent,
)
from pice.errors import PiceError, UpstreamError, UpstreamProtocolError, UpstreamTimeoutError
from pice.openai_protocol import ChatMessage, Usage
from pice_gateway.cloud import CLOUD, CloudTextStream
from pice_gateway.edges import EdgeRegistry
from pice_gateway.progressive.expand_prompt import EchoStripper, cloud_expansion_messages
from pice_gateway.scheduling.base import PointPlacement, Scheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpansionSpec:
    """What every expansion of one request shares."""

    request_id: str
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float
    top_p: float | None
    seed: int | None
    stall_seconds: float
    cloud_model: str

    def sampling(self) -> dict[str, Any]:
        """The sampling fields, as both ``/v1/expand`` and chat completions name them."""
        fields: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_p is not None:
            fields["top_p"] = self.top_p
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields


class PointSink(Protocol):
    """Where expansions go: implemented by the progressive run."""

    def point_attempt(self, index: int, source: str) -> None: ...
    def point_delta(self, index: int, text: str) -> None: ...
    def point_restart(self, index: int) -> None: ...
    def point_done(
        self, index: int, text: str | None, source: str, finish_reason: str | None, tokens: int
    ) -> None: ...
    def add_usage(self, source: str, usage: Usage, *, estimated: bool = False) -> None: ...
    def fail(self, err: PiceError) -> None: ...
    def jobs_changed(self) -> None: ...


Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass
class _Lane:
    pending: list[int] = field(default_factory=list)
    setting_up: bool = False


class _JobFailed(Exception):
    def __init__(self, err: PiceError, *, edge_down: bool) -> None:
        super().__init__(err.message)
        self.err = err
        self.edge_down = edge_down


class Dispatcher:
    def __init__(
        self,
        *,
        registry: EdgeRegistry,
        scheduler: Scheduler,
        cloud: httpx.AsyncClient,
        spec: ExpansionSpec,
        titles: Callable[[], list[str]],
        sink: PointSink,
        spawn: Spawn,
    ) -> None:
        self._registry = registry
        self._scheduler = scheduler
        self._cloud = cloud
        self._spec = spec
        self._titles = titles
        self._sink = sink
        self._spawn = spawn
        self._lanes: dict[str, _Lane] = {}
        self._excluded: dict[int, set[str]] = {}
        self._active = 0

    @property
    def idle(self) -> bool:
        """No job running and no point waiting."""
        return self._active == 0 and not any(lane.pending for lane in self._lanes.values())

    def submit(self, index: int) -> None:
        """Place point ``index`` (its title is known) and start it as soon as its lane allows."""
        excluded = self._excluded.setdefault(index, set())
        placement = PointPlacement(
            request_id=self._spec.request_id,
            point=index,
            title=self._titles()[index],
            excluded=frozenset(excluded),
        )
        edge = self._scheduler.place(placement, self._registry.snapshot())
        if edge is None:
            self._sink.point_attempt(index, CLOUD)
            self._start(self._cloud_point(index))
            return
        self._sink.point_attempt(index, edge)
        self._registry.acquire(edge, 1)
        lane = self._lanes.setdefault(edge, _Lane())
        lane.pending.append(index)
        if not lane.setting_up:
            self._launch(edge)

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        self._active += 1
        self._spawn(job)

    def _launch(self, edge: str) -> None:
        lane = self._lanes[edge]
        indices, lane.pending = lane.pending, []
        lane.setting_up = True
        self._start(self._edge_job(edge, indices))

    def _setup_over(self, edge: str) -> None:
        lane = self._lanes[edge]
        if not lane.setting_up:
            return
        lane.setting_up = False
        if lane.pending:
            self._launch(edge)

    def _job_over(self) -> None:
        self._active -= 1
        self._sink.jobs_changed()

    def _reassign(self, edge: str, indices: list[int]) -> None:
        for index in indices:
            self._excluded.setdefault(index, set()).add(edge)
            self._sink.point_restart(index)
            self.submit(index)

    async def _edge_job(self, edge: str, indices: list[int]) -> None:
        remaining = set(indices)
        try:
            await self._stream_edge_job(edge, indices, remaining)
        except _JobFailed as failure:
            logger.warning(
                "edge %s failed points %s of %s: %s",
                edge,
                sorted(remaining),
                self._spec.request_id,
                failure.err.message,
            )
            self._registry.release(edge, len(remaining))
            if failure.edge_down:
                self._registry.mark_down(edge, failure.err.message)
            lane = self._lanes[edge]
            # Points still waiting in this lane would go to the same failed edge.
            waiting, lane.pending = lane.pending, []
            lane.setting_up = False
            self._registry.release(edge, len(waiting))
            self._reassign(edge, sorted(remaining))
            for index in waiting:
                self._sink.point_restart(index)
                self.submit(index)
        finally:
            self._setup_over(edge)
            self._job_over()

    async def _stream_edge_job(self, edge: str, indices: list[int], remaining: set[int]) -> None:
        client = self._registry.client(edge)
        spec = self._spec
        request = ExpandRequest(
            messages=[ChatMessage(**message) for message in spec.messages],
            sketch=self._titles(),
            points=indices,
            request_id=spec.request_id,
            **spec.sampling(),
        )
        prompt_tokens = 0
        completion_tokens = 0
        loop = asyncio.get_running_loop()
        try:
            # One deadline, pushed back by every event: it covers connecting, the response
            # headers, queueing on the edge and every gap between tokens.
            async with (
                asyncio.timeout(spec.stall_seconds) as deadline,
                contextlib.aclosing(client.expand(request)) as events,
            ):
                async for event in events:
                    deadline.reschedule(loop.time() + spec.stall_seconds)
                    if isinstance(event, StartEvent):
                        prompt_tokens = event.prompt_tokens
                        self._setup_over(edge)
                    elif isinstance(event, DeltaEvent):
                        if event.point in remaining:
                            self._sink.point_delta(event.point, event.text)
                    elif isinstance(event, PointDoneEvent):
                        point = event.point
                        if point not in remaining:
                            continue
                        if event.finish_reason == "cancelled":
                            raise _JobFailed(
                                UpstreamError(f"edge {edge} cancelled point {point}"),
                                edge_down=False,
                            )
                        completion_tokens += event.completion_tokens
                        remaining.discard(point)
                        self._registry.release(edge, 1)
                        self._sink.point_done(
                            point, event.text, edge, event.finish_reason, event.completion_tokens
                        )
                    elif isinstance(event, DoneEvent):
                        self._sink.add_usage(edge, event.usage)
                        prompt_tokens = completion_tokens = 0
                        break
                    else:
                        raise _JobFailed(
                            UpstreamError(f"edge {edge} reported an error: {event.error.message}"),
                            edge_down=False,
                        )
        except TimeoutError as exc:
            raise _JobFailed(
                UpstreamTimeoutError(f"edge {edge} stalled: no event for {spec.stall_seconds}s"),
                edge_down=True,
            ) from exc
        except UpstreamProtocolError as err:
            raise _JobFailed(err, edge_down=False) from err
        except PiceError as err:
            raise _JobFailed(err, edge_down=isinstance(err, UpstreamError)) from err
        finally:
            if prompt_tokens or completion_tokens:
                # The job ended without its ``done`` usage: count what its events reported.
                self._sink.add_usage(
                    edge, Usage.of(prompt_tokens, completion_tokens), estimated=True
                )
        if remaining:
            raise _JobFailed(
                UpstreamError(
                    f"edge {edge} ended the job with points {sorted(remaining)} unfinished"
                ),
                edge_down=False,
            )

    async def _cloud_point(self, index: int) -> None:
        titles = self._titles()
        spec = self._spec
        payload: dict[str, Any] = {
            "model": spec.cloud_model,
            "messages": cloud_expansion_messages(spec.messages, titles, index),
            **spec.sampling(),
        }
        stream = CloudTextStream(self._cloud, payload)
        echo = EchoStripper(index, titles[index])
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stream.open(stack)
                async with contextlib.aclosing(stream.texts()) as texts:
                    async for text in texts:
                        if out := echo.feed(text):
                            self._sink.point_delta(index, out)
            if out := echo.flush():
                self._sink.point_delta(index, out)
            usage = stream.usage_or_estimate()
            self._sink.add_usage(CLOUD, usage, estimated=stream.usage_estimated)
            self._sink.point_done(index, None, CLOUD, stream.finish_reason, usage.completion_tokens)
        except PiceError as err:
            self._sink.fail(err)
        finally:
            self._job_over()
