"""Dispatch of sketch points to edges, with failover to other edges and the cloud.

Each point the sketch names is placed by the placement policy on an edge's lane
(:mod:`~pice_gateway.progressive.lanes` batches the points of one edge into jobs) or, when no
edge can take it, on the cloud. Everything that happens goes to the run as
:mod:`~pice_gateway.progressive.events`, delivered synchronously through ``emit``: the run sees
each event while :attr:`Dispatcher.idle` still matches it (through a queue, ``idle`` could run
ahead of events not yet read, and the run could finish before a job's usage arrived).

Candidates: once the policy chose an edge, :func:`~pice_gateway.placement.candidates.candidates_for`
says how many candidates the point decodes there (one for the first point, the ensemble's k for
later ones when the edge has room). A job asks one ``candidates`` of all its points, so the
points leaving a lane together go out as one job per distinct k.

Companions: when the chosen edge gives a later point fewer candidates than the ensemble wants,
:func:`~pice_gateway.placement.candidates.companion_edges` may name other edges, each to decode
one more candidate as a one-point job of its own (outside their lanes, like a hedge). Their
candidates are numbered after the chosen edge's (k, k + 1, …) and reach the run's selector like
any other; a companion on an edge serving the same model samples at the ensemble's temperature
with a seed of its own, one on another model decodes as the request asks. A companion that
fails reports its candidate as failed (``finish_reason`` ``error``), so the choice goes on
without it, and never retries; when the point's own attempt fails, its companions are
cancelled with it (the retry may get new ones). A point with companions is not hedged: it
already runs on more than one edge.

Failover: a job that fails (connection error, error status or event, a point cancelled, no
``start`` event within ``edge_queue_seconds``, or after it no event for ``edge_stall_seconds``)
gives each unfinished point back to the policy, excluding every edge that already failed that
point; when no edge is left, the cloud expands the point itself. A broken connection or a stall
also marks the edge down; an error the edge reported (or a malformed event) does not, nor does
a job left queued too long, nor an edge's 429 (its job queue is full: the edge is alive, only
full; its load report says so).
Only a failure of the cloud fails the request.

Queued is not stalled: a job's stream is read under a queue bound until the edge admits it
and a stall bound after (:mod:`~pice_gateway.progressive.edge_job`).

Hedging (``progressive.hedging``, :mod:`~pice_gateway.placement.hedging`): a watchdog task
checks the points sent to edges against their expected finish; a late one is duplicated as a
one-point job on another edge with a free slot. The duplicate's text is held back, so the
client keeps seeing the first attempt's. The first to finish wins: if the duplicate does (or
the first attempt fails meanwhile), it takes over the point as a failover would (the run
continues after what was sent) and the first attempt is dropped; the loser's job is cancelled,
closing its stream so the edge frees its sequences and KV cells. A job that still has other
points running cannot be cancelled for one of them (the edge API cancels whole jobs): its
dropped point's output is ignored and its cells are freed when the job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pice.edge_protocol import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    ExpandEvent,
    PointDoneEvent,
    StartEvent,
)
from pice.errors import PiceError, UpstreamError
from pice.tracing import NO_SPAN, NO_TRACING, Attributes, Span, Tracing
from pice_gateway.cloud_client import CLOUD, CloudTextStream
from pice_gateway.cloud_meter import CloudMeter, StreamTicket
from pice_gateway.edges import EdgeRegistry
from pice_gateway.placement.base import EdgeStatus, PlacementPolicy, PointPlacement
from pice_gateway.placement.candidates import candidates_for, companion_edges
from pice_gateway.placement.estimate import Finish
from pice_gateway.placement.hedging import (
    HedgeRule,
    RunningPoint,
    due,
    finish_estimate,
    hedge_target,
    next_due,
)
from pice_gateway.placement.overflow import OverflowRule, to_cloud
from pice_gateway.progressive.edge_job import EdgeJob, JobFailed, read_job
from pice_gateway.progressive.events import (
    DispatchEvent,
    ExpansionFailed,
    HedgeSettled,
    JobEnded,
    Overflow,
    PointDelta,
    PointDone,
    PointFailed,
    PointHedged,
    PointStarted,
    UsageCounted,
)
from pice_gateway.progressive.expand_prompt import EchoStripper
from pice_gateway.progressive.lanes import Lanes
from pice_gateway.progressive.spec import ExpansionSpec
from pice_gateway.progressive.tasks import Job, TaskSet
from pice_gateway.upstream_http import UpstreamClient

logger = logging.getLogger(__name__)

# Longest sleep of the hedging watchdog, and its shortest (a due point with no spare edge is
# looked at again this often, not in a busy loop).
_WATCH_TICK = 0.5
_WATCH_MIN = 0.05


@dataclass(frozen=True)
class _Timed:
    """A point placed alone on a free slot of ``edge``: its finish there is a measurement."""

    edge: str
    placed_at: float  # monotonic
    finish: Finish


class Dispatcher:
    """Places the points of one request, runs their jobs, and fails over; see the module doc."""

    def __init__(
        self,
        *,
        registry: EdgeRegistry,
        policy: PlacementPolicy,
        cloud: UpstreamClient,
        spec: ExpansionSpec,
        emit: Callable[[DispatchEvent], None],
        hedging: HedgeRule | None = None,
        overflow: OverflowRule | None = None,
        cloud_meter: CloudMeter | None = None,
        tracing: Tracing = NO_TRACING,
        parent: Span = NO_SPAN,
    ) -> None:
        self._registry = registry
        self._tracing = tracing
        # Each job's span is a child of the request's (a job is started from whichever task
        # placed its points: the sketch reader's, or a failed job's).
        self._parent = parent
        self._policy = policy
        self._cloud = cloud
        self._spec = spec
        self._emit = emit
        self._tasks = TaskSet(lambda err: emit(ExpansionFailed(err)), name="progressive run")
        self._outline: list[str] = []
        self._lanes = Lanes()
        self._excluded: dict[int, set[str]] = {}
        # Per point, the candidates its current attempt decodes.
        self._candidates: dict[int, int] = {}
        self._active = 0
        # Sequences this run holds on each edge's in-flight count; what aclose gives back when
        # the run is cancelled with jobs running or points waiting in a lane.
        self._held: Counter[str] = Counter()
        self._hedging = hedging or HedgeRule()
        self._overflow = overflow or OverflowRule()
        self._meter = cloud_meter or CloudMeter()
        # Per point on the cloud, its stream as the meter counts it (closed by the stream, or
        # here at aclose for a job cancelled before it ran).
        self._cloud_tickets: dict[int, StreamTicket] = {}
        # Hedging's view: per point on an edge, its attempt; the job running it; its hedge.
        self._watch: dict[int, RunningPoint] = {}
        self._jobs: dict[int, EdgeJob] = {}
        self._hedges: dict[int, EdgeJob] = {}
        self._watching = False
        # Per point, its current attempt's companions still running on other edges.
        self._companions: dict[int, list[EdgeJob]] = {}
        # Per point placed alone on a free slot of an edge: when, and the estimate it was placed
        # with. When it finishes there, the registry learns how fast that edge's points finish.
        self._timed: dict[int, _Timed] = {}

    @property
    def idle(self) -> bool:
        """No job running and no point waiting."""
        return self._active == 0 and not self._lanes.any_waiting

    def add_point(self, index: int, title: str) -> None:
        """The sketch named point ``index``: place it now."""
        if index != len(self._outline):
            raise ValueError(f"points must be added in order: got {index}")
        self._outline.append(title)
        self._place(index)

    def close(self) -> None:
        """Start no more jobs (a job failing while being cancelled must not start another)."""
        self._tasks.close()

    async def aclose(self) -> None:
        """Cancel every job; each closes its upstream stream, which stops the work there."""
        await self._tasks.aclose()
        for ticket in self._cloud_tickets.values():
            self._meter.closed(ticket, 0)  # a no-op for the streams that closed themselves
        for edge, sequences in list(self._held.items()):
            self._release(edge, sequences)

    def _acquire(self, edge: str, sequences: int) -> None:
        self._held[edge] += sequences
        self._registry.acquire(edge, sequences)

    def _release(self, edge: str, sequences: int) -> None:
        sequences = min(sequences, self._held[edge])
        self._held[edge] -= sequences
        self._registry.release(edge, sequences)

    # -- placement ---------------------------------------------------------------------------

    def _placement(self, index: int) -> PointPlacement:
        return PointPlacement(
            request_id=self._spec.request_id,
            point=index,
            title=self._outline[index],
            excluded=frozenset(self._excluded.setdefault(index, set())),
            expected_tokens=min(self._spec.max_tokens, self._registry.expected_point_tokens()),
        )

    def _place(self, index: int) -> None:
        placement = self._placement(index)
        snapshot = self._registry.snapshot()
        edge = self._policy.place(placement, snapshot)
        self._watch.pop(index, None)
        self._timed.pop(index, None)
        tokens = placement.expected_tokens or 1.0
        status = next((s for s in snapshot if s.name == edge), None) if edge else None
        # The edge's expected finish, for overflow, hedging and the ``pice`` object.
        finish = finish_estimate(status, snapshot, tokens) if status is not None else None
        estimate = finish.seconds if finish is not None else None
        overflow: Overflow | None = None
        if edge is not None and estimate is not None and self._overflow.enabled:
            cloud_finish = self._meter.expected_finish(tokens)
            if to_cloud(estimate, cloud_finish, self._meter.open_expansions, self._overflow):
                assert cloud_finish is not None
                overflow = Overflow(edge, estimate, cloud_finish)
                edge = None
        if edge is None or status is None:
            self._candidates[index] = 1
            self._emit(PointStarted(index, CLOUD, overflow=overflow))
            # Counted on the cloud from now, not from when its task first runs: the next
            # point's overflow check must see it.
            self._cloud_tickets[index] = self._meter.opened(expansion=True)
            self._start(self._cloud_job(index))
            return
        k = self._candidates[index] = candidates_for(
            index,
            configured=self._spec.candidates,
            max_points=self._spec.max_points,
            edge=status,
            max_slowdown=self._spec.candidate_max_slowdown,
        )
        companions = self._companion_edges(placement, status, snapshot, k)
        self._emit(PointStarted(index, edge, k + len(companions), estimate=finish))
        if self._hedging.enabled and estimate is not None and not companions:
            self._watch[index] = RunningPoint(index, edge, time.monotonic(), estimate, sent=False)
            if not self._watching:
                self._watching = True
                self._tasks.spawn(self._watchdog())
        if k == 1 and not companions and finish is not None and finish.wait == 0.0:
            self._timed[index] = _Timed(edge, time.monotonic(), finish)
        self._acquire(edge, k)
        self._launch(edge, self._lanes.place(edge, index))
        for offset, other in enumerate(companions, start=k):
            self._start_companion(index, edge, other, offset)

    def _companion_edges(
        self, placement: PointPlacement, primary: EdgeStatus, snapshot: list[EdgeStatus], k: int
    ) -> list[str]:
        if not self._spec.candidate_across_edges:
            return []
        return companion_edges(
            placement,
            primary=primary,
            chosen=k,
            configured=self._spec.candidates,
            max_points=self._spec.max_points,
            edges=snapshot,
            max_slowdown=self._spec.candidate_max_slowdown,
        )

    def _start_companion(self, index: int, primary: str, edge: str, offset: int) -> None:
        same_model = self._registry.served(edge) == self._registry.served(primary)
        job = EdgeJob(
            edge,
            [index],
            1,
            lane=False,
            companion=True,
            offset=offset,
            sample_as=offset if same_model else None,
        )
        self._companions.setdefault(index, []).append(job)
        self._acquire(edge, 1)
        self._start(self._edge_job(job))

    def _retry(self, index: int, failed: str, reason: str) -> None:
        self._emit(PointFailed(index, failed, reason))
        self._place(index)

    def _launch(self, edge: str, points: list[int]) -> None:
        by_k: dict[int, list[int]] = {}
        for index in points:
            by_k.setdefault(self._candidates[index], []).append(index)
        for k, group in by_k.items():
            job = EdgeJob(edge, group, k)
            for index in group:
                self._jobs[index] = job
                if (watch := self._watch.get(index)) is not None:
                    self._watch[index] = dataclasses.replace(watch, sent=True)
            self._start(self._edge_job(job))

    def _start(self, job: Job) -> None:
        self._active += 1
        self._tasks.spawn(job)

    def _job_over(self, source: str) -> None:
        self._active -= 1
        self._emit(JobEnded(source))

    # -- edge jobs ---------------------------------------------------------------------------

    def _job_span(
        self, source: str, points: list[int], candidates: int, *, hedge: bool = False
    ) -> Span:
        attributes: Attributes = {
            "pice.edge": source,
            "pice.points": points,
            "pice.candidates": candidates,
            "pice.hedge": hedge,
        }
        return self._tracing.start("pice.expand", parent=self._parent, attributes=attributes)

    async def _edge_job(self, job: EdgeJob) -> None:
        job.task = asyncio.current_task()
        span = self._job_span(job.edge, job.points, job.candidates, hedge=job.hedge)
        try:
            if job.open:  # else dropped before it ran (a companion of a failed attempt)
                with span.activate():  # its traceparent goes to the edge
                    await self._stream(job)
        except JobFailed as failure:
            span.fail(failure.err.message)
            if job.hedge:
                self._hedge_failed(job, failure)
            elif job.companion:
                self._companion_failed(job, failure)
            else:
                self._job_failed(job, failure)
        finally:
            span.end()
            if job.lane:
                self._launch(job.edge, self._lanes.setup_over(job.edge))
            self._job_over(job.edge)

    async def _stream(self, job: EdgeJob) -> None:
        request = self._spec.expand_request(
            self._outline, job.points, job.candidates, sample_as=job.sample_as
        )
        try:
            await read_job(
                job.edge,
                self._registry.client(job.edge).expand(request),
                lambda event: self._on_edge_event(job, event),
                queue_seconds=self._spec.queue_seconds,
                stall_seconds=self._spec.stall_seconds,
            )
        finally:
            if (usage := job.unreported_usage()) is not None:
                # The job ended without its ``done`` usage: count what its events reported.
                self._emit(UsageCounted(job.edge, usage, estimated=True))
        if job.open:
            message = f"edge {job.edge} ended the job with points {sorted(job.open)} unfinished"
            raise JobFailed(UpstreamError(message), edge_down=False)

    def _on_edge_event(self, job: EdgeJob, event: ExpandEvent) -> bool:
        """Act on one event of ``job``; ``True`` once the job is complete."""
        match event:
            case StartEvent():
                job.prompt_tokens = event.prompt_tokens
                if job.lane:
                    self._launch(job.edge, self._lanes.setup_over(job.edge))
            case DeltaEvent() if event.point in job.open:
                if job.hedge:
                    job.held_text += event.text
                else:
                    candidate = event.candidate + job.offset
                    self._emit(PointDelta(event.point, job.edge, candidate, event.text))
            case PointDoneEvent() if event.point in job.open:
                self._candidate_done(job, event)
            case DoneEvent():
                self._emit(UsageCounted(job.edge, event.usage))
                job.prompt_tokens = job.completion_tokens = 0
                return True
            case ErrorEvent():
                message = f"edge {job.edge} reported an error: {event.error.message}"
                raise JobFailed(UpstreamError(message), edge_down=False)
        return False

    def _candidate_done(self, job: EdgeJob, event: PointDoneEvent) -> None:
        point = event.point
        if event.finish_reason == "cancelled":
            message = f"edge {job.edge} cancelled point {point}"
            raise JobFailed(UpstreamError(message), edge_down=False)
        if job.hedge:
            # The duplicate finished first: it takes the point over, the first attempt loses.
            self._promote(point, job, f"hedge on {job.edge} finished first")
            self._emit(HedgeSettled(point, job.edge))
        job.completion_tokens += event.completion_tokens
        self._registry.observe_point(event.completion_tokens)
        timed = self._timed.pop(point, None)
        if timed is not None and timed.edge == job.edge and not job.companion:
            seconds = time.monotonic() - timed.placed_at - timed.finish.rtt
            batch = timed.finish.busy + 1
            self._registry.observe_finish(job.edge, batch, event.completion_tokens, seconds)
        job.open[point] -= 1
        if not job.open[point]:
            del job.open[point]
            if job.companion:
                self._forget_companion(point, job)
            else:
                self._point_finished(point, job)
        self._release(job.edge, 1)
        self._emit(
            PointDone(
                point,
                job.edge,
                event.candidate + job.offset,
                event.text,
                event.finish_reason,
                event.completion_tokens,
                event.logprob_mean,
                model=self._registry.served(job.edge),
            )
        )

    def _job_failed(self, job: EdgeJob, failure: JobFailed) -> None:
        """Give the job's unfinished points, and those waiting for its edge, to other sources."""
        edge, reason = job.edge, failure.err.described
        unfinished = sorted(job.open)
        logger.warning(
            "edge %s failed points %s of %s: %s", edge, unfinished, self._spec.request_id, reason
        )
        self._release(edge, sum(job.open.values()))
        job.open.clear()
        if failure.edge_down:
            self._registry.mark_down(edge, reason)
        # Points still waiting in this lane would go to the same failed edge.
        waiting = self._lanes.abandon(edge) if job.lane else []
        self._release(edge, sum(self._candidates[index] for index in waiting))
        for index in [*unfinished, *waiting]:
            # The attempt is over, and its candidates elsewhere with it.
            for companion in self._companions.pop(index, []):
                self._drop(companion, index)
        for index in unfinished:
            self._excluded.setdefault(index, set()).add(edge)
            if index in self._hedges:
                # The point's duplicate is already running elsewhere: it takes over.
                hedge = self._hedges[index]
                self._promote(index, hedge, reason)
                self._emit(HedgeSettled(index, hedge.edge))
            else:
                self._retry(index, edge, reason)
        for index in waiting:
            self._retry(index, edge, reason)

    # -- hedging -----------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Hedge every point that becomes due, for as long as the run lasts."""
        rule = self._hedging
        while True:
            now = time.monotonic()
            for index in due(self._watch.values(), now, rule):
                self._hedge(index, now)
            wake = next_due(self._watch.values(), rule)
            delay = _WATCH_TICK if wake is None else min(max(wake - now, 0.0), _WATCH_TICK)
            await asyncio.sleep(max(delay, _WATCH_MIN))

    def _hedge(self, index: int, now: float) -> None:
        """Duplicate late point ``index`` on an edge with a free slot, if there is one."""
        watch, primary = self._watch[index], self._jobs.get(index)
        if primary is None or index not in primary.open or index in self._hedges:
            return
        snapshot = self._registry.snapshot()
        edge = hedge_target(self._placement(index), watch.edge, snapshot, self._policy)
        if edge is None:
            return  # no spare capacity now; looked at again on the next tick
        self._watch[index] = dataclasses.replace(watch, hedged=True)
        job = self._hedges[index] = EdgeJob(edge, [index], 1, hedge=True, lane=False)
        logger.info(
            "hedging point %d of %s: %s is %.1fs in (estimate %.1fs); duplicate on %s",
            index,
            self._spec.request_id,
            watch.edge,
            now - watch.placed_at,
            watch.estimate,
            edge,
        )
        self._emit(PointHedged(index, watch.edge, edge, now - watch.placed_at, watch.estimate))
        self._acquire(edge, 1)
        self._start(self._edge_job(job))

    def _promote(self, index: int, hedge: EdgeJob, reason: str) -> None:
        """The hedge of ``index`` becomes its attempt; the first attempt is dropped."""
        del self._hedges[index]
        primary = self._jobs[index]
        hedge.hedge = False
        self._jobs[index] = hedge
        self._candidates[index] = 1
        self._emit(PointFailed(index, primary.edge, reason))
        self._emit(PointStarted(index, hedge.edge, 1))
        if hedge.held_text:
            self._emit(PointDelta(index, hedge.edge, 0, hedge.held_text))
        self._drop(primary, index)

    def _point_finished(self, index: int, job: EdgeJob) -> None:
        """Every candidate of ``index`` on ``job`` finished: a running hedge of it lost."""
        self._watch.pop(index, None)
        self._jobs.pop(index, None)
        if (hedge := self._hedges.pop(index, None)) is not None:
            self._emit(HedgeSettled(index, job.edge))
            self._drop(hedge, index)

    def _drop(self, job: EdgeJob, index: int) -> None:
        """``job`` no longer runs ``index``: give back its slots; cancel it if nothing is left.

        Cancelling closes its stream, which makes the edge cancel its sequences and free
        their cells; a job with other points still open keeps running (see the module doc).
        """
        self._release(job.edge, job.open.pop(index, 0))
        if not job.open and job.task is not None and job.task is not asyncio.current_task():
            job.task.cancel()

    def _side_job_failed(self, job: EdgeJob, failure: JobFailed, what: str) -> int:
        """A one-point job beside the point's attempt (a hedge, a companion) failed: log it,
        give back its slots, take its edge down if the transport broke; its point."""
        index = job.points[0]
        logger.warning(
            "%s of point %d of %s on %s failed: %s",
            what,
            index,
            self._spec.request_id,
            job.edge,
            failure.err.described,
        )
        self._release(job.edge, sum(job.open.values()))
        job.open.clear()
        if failure.edge_down:
            self._registry.mark_down(job.edge, failure.err.described)
        return index

    def _hedge_failed(self, job: EdgeJob, failure: JobFailed) -> None:
        """A hedge failed: the first attempt carries on alone."""
        index = self._side_job_failed(job, failure, "hedge")
        self._hedges.pop(index, None)
        self._emit(HedgeSettled(index, None))

    # -- companions --------------------------------------------------------------------------

    def _forget_companion(self, index: int, job: EdgeJob) -> bool:
        """``job`` no longer counts among ``index``'s companions; ``False`` if it did not."""
        running = self._companions.get(index, [])
        if job not in running:
            return False
        running.remove(job)
        if not running:
            del self._companions[index]
        return True

    def _companion_failed(self, job: EdgeJob, failure: JobFailed) -> None:
        """A companion failed: its candidate is reported failed, and the choice goes on."""
        index = self._side_job_failed(job, failure, "companion candidate")
        if self._forget_companion(index, job):
            self._emit(PointDone(index, job.edge, job.offset, "", "error", 0))

    # -- the cloud as the last resort --------------------------------------------------------

    async def _cloud_job(self, index: int) -> None:
        span = self._job_span(CLOUD, [index], 1)
        try:
            with span.activate():  # its traceparent goes to the cloud
                await self._cloud_expand(index)
        except PiceError as err:
            span.fail(err.message)
            self._emit(ExpansionFailed(err))
        finally:
            span.end()
            self._job_over(CLOUD)

    async def _cloud_expand(self, index: int) -> None:
        stream = CloudTextStream(
            self._cloud,
            self._spec.cloud_payload(self._outline, index),
            meter=self._meter,
            expansion=True,
            ticket=self._cloud_tickets.get(index),
        )
        echo = EchoStripper(index, self._outline[index])
        async with contextlib.AsyncExitStack() as stack:
            await stream.open(stack)
            async with contextlib.aclosing(stream.texts()) as texts:
                async for text in texts:
                    if out := echo.feed(text):
                        self._emit(PointDelta(index, CLOUD, 0, out))
        if out := echo.flush():
            self._emit(PointDelta(index, CLOUD, 0, out))
        usage = stream.usage_or_estimate()
        self._emit(UsageCounted(CLOUD, usage, estimated=stream.usage_estimated))
        self._emit(PointDone(index, CLOUD, 0, None, stream.finish_reason, usage.completion_tokens))
