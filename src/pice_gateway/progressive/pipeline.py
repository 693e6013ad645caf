"""One progressive request: sketch on the cloud, expand on edges, merge, account.

Cancellation path: the response layer iterates :meth:`ProgressiveRun.events`. When the client
disconnects, sse-starlette cancels the task iterating it (for a non-streamed request,
:func:`pice.http.disconnect.until_disconnect` cancels the handler), and the generator's
``finally`` calls :meth:`ProgressiveRun.aclose`. That cancels every task of the run: the sketch
reader and each edge or cloud expansion job. Each of those holds its upstream response inside
``async with client.stream(...)``, so cancelling it closes the connection; the cloud stops
generating and each edge agent cancels the job's sequences at its next decode step and frees
their KV cells (docs/edge-api.md). Nothing of the request keeps running after the client left.

The same path ends a run early when the answer meets one of the request's ``stop`` sequences
(:class:`pice.stops.StopMatcher`, applied to the merged text as the client would see it):
the run finishes with ``finish_reason: "stop"``, the consumer stops iterating, and the close
cancels the sketch and every expansion still decoding.

``finish_reason`` is ``"length"`` when anything shown was cut by a token limit: the sketch (its
outline, or its direct answer), any point's expansion (by ``progressive.expansion_max_tokens``),
or the answer itself where the points' bodies reached what the request's ``max_tokens`` left
them (:mod:`~pice_gateway.progressive.merge`; the run then ends there like a stop sequence does:
``pice.cut_by_limit`` is set, and the close cancels the sketch and every expansion still
decoding); otherwise ``"stop"``.

A run built with ``watch_events=True`` (the request's ``pice.events``) also queues what
happened on the way (:mod:`pice_gateway.progressive.watch`: the sketch as written, each point's
attempts and text) as :class:`Watched` items between the answer's; without it the queue holds
exactly the answer's text and the finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from pice.errors import PiceError
from pice.openai_protocol import ChatCompletionRequest, Usage
from pice.stops import StopMatcher
from pice.tracing import NO_TRACING, Span, Tracing
from pice_gateway.cloud_client import CLOUD, CloudTextStream
from pice_gateway.cloud_loops import LoopCut
from pice_gateway.cloud_meter import CloudMeter
from pice_gateway.direct_path import cloud_payload
from pice_gateway.edges import EdgeRegistry
from pice_gateway.placement.base import PlacementPolicy
from pice_gateway.placement.hedging import HedgeRule
from pice_gateway.placement.overflow import OverflowRule
from pice_gateway.progressive import watch
from pice_gateway.progressive.accounting import (
    Clock,
    EstimateReport,
    HedgeReport,
    OverflowReport,
    PiceReport,
    PointReport,
    SketchReport,
)
from pice_gateway.progressive.candidates import (
    Attempt,
    CandidateSelector,
    SelectorFactory,
    ensemble_selector,
)
from pice_gateway.progressive.dispatch import Dispatcher
from pice_gateway.progressive.events import (
    DispatchEvent,
    ExpansionFailed,
    HedgeSettled,
    JobEnded,
    PointDelta,
    PointDone,
    PointFailed,
    PointHedged,
    PointStarted,
    UsageCounted,
)
from pice_gateway.progressive.merge import Merger
from pice_gateway.progressive.sketch import (
    DirectText,
    FrameText,
    PointFound,
    SketchEvent,
    SketchParser,
)
from pice_gateway.progressive.spec import (
    ExpansionSpec,
    request_budget,
    sketch_frame,
    sketch_payload,
)
from pice_gateway.progressive.tasks import TaskSet
from pice_gateway.settings import GatewaySettings
from pice_gateway.upstream_http import UpstreamClient


@dataclass(frozen=True)
class TextOut:
    """Answer text to send now."""

    text: str


@dataclass(frozen=True)
class Finished:
    report: PiceReport
    finish_reason: str


@dataclass(frozen=True)
class Watched:
    """Something a client watching the run is told (only for a run built with ``watch_events``)."""

    event: watch.WatchEvent


RunEvent = TextOut | Finished | Watched


@dataclass(frozen=True)
class Upstreams:
    """The shared clients a run uses (owned by the app's lifespan)."""

    cloud: UpstreamClient
    registry: EdgeRegistry
    policy: PlacementPolicy
    tracing: Tracing = NO_TRACING
    # The gateway's one view of the cloud's streams and speed (cloud overflow reads it).
    cloud_meter: CloudMeter = field(default_factory=CloudMeter)


class ProgressiveRun:
    """Call :meth:`start` (errors here come before the first byte), then iterate :meth:`events`."""

    def __init__(
        self,
        upstreams: Upstreams,
        settings: GatewaySettings,
        request: ChatCompletionRequest,
        *,
        allow_direct: bool,
        request_id: str,
        clock: Clock | None = None,
        selector: SelectorFactory = ensemble_selector,
        watch_events: bool = False,
    ) -> None:
        self._clock = clock or Clock()
        self._watch = watch_events
        # The stream of the cloud's own answer, opened only if the framed sketch is prose.
        self._cloud_answer: Callable[[], CloudTextStream] = lambda: CloudTextStream(
            upstreams.cloud,
            cloud_payload(request, settings.cloud.model),
            meter=upstreams.cloud_meter,
        )
        self._stop_cloud_loops = settings.progressive.stop_cloud_loops
        # What that answer may repeat without being stopped: the conversation's own passages.
        self._messages = request.messages
        self._registry = upstreams.registry
        self._queue: asyncio.Queue[RunEvent | PiceError] = asyncio.Queue()
        self._tasks = TaskSet(self._fail, name="progressive run")
        self._stack = contextlib.AsyncExitStack()
        self._new_selector = selector
        self._selectors: dict[int, CandidateSelector] = {}
        # What the ensemble's relevance is measured against: the turn being answered.
        self._question = next(
            (m.text() for m in reversed(request.messages) if m.role == "user"), ""
        )
        self._report = PiceReport(mode="progressive", reason="outline")
        self._sketch_done = False
        self._finished = False
        self._first_dispatch_ms: float | None = None
        # Spans: the sketch and each point are children of the request's span (current here,
        # in the handler); their work runs in tasks, so the parent is kept, not looked up.
        self._tracing = upstreams.tracing
        self._span = upstreams.tracing.current()
        self._sketch_span: Span = self._tracing.start(
            "pice.sketch", parent=self._span, attributes={"pice.allow_direct": allow_direct}
        )
        self._point_spans: dict[int, Span] = {}
        frame = sketch_frame(settings, request, allow_direct=allow_direct)
        budget = request_budget(settings, request, frame=frame)
        self._merger = Merger(point_tokens=budget.point_tokens, body_tokens=budget.body_tokens)
        payload = sketch_payload(
            settings, request, allow_direct=allow_direct, frame=frame, budget=budget
        )
        self._report.sketch = SketchReport(model=payload["model"], frame=frame)
        self._sketch = CloudTextStream(upstreams.cloud, payload, meter=upstreams.cloud_meter)
        self._parser = SketchParser(budget.max_points, frame=frame)
        # A framed sketch's closing sentence, shown once every point is.
        self._closing: str | None = None
        self._stop = StopMatcher(request.stop_list())
        spec = ExpansionSpec.for_request(settings, request, request_id, budget=budget)
        self._report.point_words = spec.point_words
        self._dispatcher = Dispatcher(
            registry=upstreams.registry,
            policy=upstreams.policy,
            cloud=upstreams.cloud,
            spec=spec,
            emit=self._on_dispatch_event,
            hedging=HedgeRule(**settings.progressive.hedging.model_dump()),
            overflow=OverflowRule(**settings.progressive.cloud_overflow.model_dump()),
            cloud_meter=upstreams.cloud_meter,
            tracing=upstreams.tracing,
            parent=self._span,
        )

    @property
    def report(self) -> PiceReport:
        """The ``pice`` report as far as the run got (complete once it finished)."""
        return self._report

    async def start(self) -> None:
        """Send the sketch request; an unreachable or failing cloud raises here."""
        try:
            with self._sketch_span.activate():  # its traceparent goes to the cloud
                await self._sketch.open(self._stack)
        except Exception as exc:
            self._sketch_span.fail(exc)
            self._sketch_span.end()
            raise

    async def events(self) -> AsyncGenerator[RunEvent, None]:
        """Answer text as it becomes sendable, then one :class:`Finished`; errors are raised."""
        self._tasks.spawn(self._read_sketch())
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, PiceError):
                    raise item
                if isinstance(item, Finished) and (self._stop.stopped or self._merger.exhausted):
                    # Cancel the rest before the answer's usage is read: each cancelled job
                    # counts what it had written (dispatch's estimate), and ``usage`` with it.
                    await self.aclose()
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Shielded: a cancelled scope (sse-starlette's, on disconnect) re-cancels every
            # await, and this cleanup must run to the end even then.
            await asyncio.shield(asyncio.ensure_future(self.aclose()))

    async def aclose(self) -> None:
        """Cancel every task of the run and close every upstream stream it holds."""
        # Both closed first: a job that fails while being cancelled must not start a replacement.
        self._tasks.close()
        self._dispatcher.close()
        await asyncio.gather(self._tasks.aclose(), self._dispatcher.aclose())
        await self._stack.aclose()
        # Spans of work the run did not finish (a client that left, a failed request).
        for span in (self._sketch_span, *self._point_spans.values()):
            span.end()

    # -- the sketch --------------------------------------------------------------------------

    async def _read_sketch(self) -> None:
        parser = self._parser
        try:
            async with contextlib.aclosing(self._sketch.texts()) as texts:
                async for text in texts:
                    if self._watch:
                        self._watched(watch.SketchDelta(text=text))
                    for event in parser.feed(text):
                        self._on_sketch_event(event)
                    if parser.ended:
                        break  # closing the stream stops the cloud writing past the outline
            for event in parser.close(cut=self._sketch.finish_reason == "length"):
                self._on_sketch_event(event)
        except asyncio.CancelledError:
            # A stop sequence (or the client) ended the run mid-sketch: count what it wrote.
            self._add_usage(CLOUD, self._sketch.usage_or_estimate(), estimated=True)
            raise
        except Exception as exc:
            self._sketch_span.fail(exc)
            raise
        finally:
            await self._stack.aclose()
            self._sketch_span.set(
                {"pice.points": len(self._report.points), "pice.outline": parser.is_outline}
            )
            self._sketch_span.end()
        self._sketch_done = True
        if self._watch:
            points = len(self._report.points)
            self._watched(watch.SketchDone(outline=parser.is_outline, points=points))
        self._report.timings.sketch_ms = self._clock.ms()
        self._add_usage(
            CLOUD, self._sketch.usage_or_estimate(), estimated=self._sketch.usage_estimated
        )
        if parser.is_outline:
            self._emit(self._merger.close_sketch())
            self._maybe_finish()
            return
        if parser.is_prose:
            await self._answer_in_cloud()
            return
        self._report.mode = "cloud"
        self._report.reason = "direct"
        self._finish("length" if self._sketch.finish_reason == "length" else "stop")

    def _on_sketch_event(self, event: SketchEvent) -> None:
        if self._finished:  # a stop sequence or the limit ended the answer: nothing more to do
            return
        if isinstance(event, PointFound):
            self._report.points.append(PointReport(title=event.title, section=event.section))
            if self._watch:
                found = watch.PointFound(
                    point=event.index, title=event.title, section=event.section
                )
                self._watched(found)
            self._emit(self._merger.add_point(event.index, event.title, event.section))
            if self._first_dispatch_ms is None:
                self._first_dispatch_ms = self._clock.ms()
            self._dispatcher.add_point(event.index, event.outline_title)
        elif isinstance(event, DirectText):
            self._emit(event.text)
        elif isinstance(event, FrameText) and self._report.sketch is not None:
            if event.closing:
                self._report.sketch.closing = True
                self._closing = event.text
            else:
                # Before any point: its line came first. Streamed, it is the first text.
                self._report.sketch.opening = True
                self._emit(event.text + "\n\n")

    async def _answer_in_cloud(self) -> None:
        """A framed sketch that wrote prose instead of an outline (none of it was shown): the
        question does not suit points, and the cloud answers the user's own messages, as
        cloud-only would, instead of the sketch's paragraph standing for the answer."""
        self._report.mode = "cloud"
        self._report.reason = "sketch_prose"
        stream = self._cloud_answer()
        cut = None
        if self._stop_cloud_loops:
            cut = LoopCut(quoted="\n".join(m.text() for m in self._messages))
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stream.open(stack)
                async with contextlib.aclosing(stream.texts()) as texts:
                    async for text in texts:
                        if cut is None:
                            self._emit(text)
                            continue
                        shown, stop = cut.feed(text)
                        if shown:
                            self._emit(shown)
                        if stop:  # a passage loop: closing the stream frees the cloud
                            self._report.loop_stopped = True
                            break
        except asyncio.CancelledError:
            self._add_usage(CLOUD, stream.usage_or_estimate(), estimated=True)
            raise
        self._add_usage(CLOUD, stream.usage_or_estimate(), estimated=stream.usage_estimated)
        self._finish("length" if stream.finish_reason == "length" else "stop")

    # -- the expansions ----------------------------------------------------------------------

    def _on_dispatch_event(self, event: DispatchEvent) -> None:
        if self._watch and (seen := watch.from_dispatch(event)) is not None:
            self._watched(seen)
        match event:
            case PointStarted(point=index, source=source, candidates=candidates):
                point = self._report.points[index]
                if not point.attempts:
                    point.placed_ms = self._clock.ms()
                    if event.estimate is not None:
                        point.estimate_s = round(event.estimate.seconds, 3)
                        point.estimate = EstimateReport.of(event.estimate)
                point.attempts.append(source)
                if (moved := event.overflow) is not None:
                    point.overflow = OverflowReport(
                        edge=moved.edge,
                        edge_finish_s=round(moved.edge_finish, 3),
                        cloud_finish_s=round(moved.cloud_finish, 3),
                    )
                self._point_span(index).set({"pice.edge": source, "pice.candidates": candidates})
                attempt = Attempt(index, source, candidates, point.title, self._question)
                self._selectors[index] = self._new_selector(attempt)
            case PointDelta(point=index):
                if shown := self._selectors[index].delta(event):
                    self._emit(self._merger.delta(index, shown))
            case PointDone(point=index):
                if (chosen := self._selectors[index].done(event)) is not None:
                    self._point_done(chosen)
            case PointFailed(point=index, source=source, reason=reason):
                self._point_span(index).event("failover", {"pice.edge": source, "reason": reason})
                self._merger.restart(index)
            case PointHedged(point=index):
                self._report.hedges += 1
                self._point_span(index).event(
                    "hedge", {"pice.edge": event.source, "pice.hedge": event.hedge}
                )
                self._report.points[index].hedges.append(
                    HedgeReport(
                        source=event.source,
                        hedge=event.hedge,
                        after_s=round(event.elapsed, 3),
                        estimate_s=round(event.estimate, 3),
                    )
                )
            case HedgeSettled(point=index, winner=winner):
                self._report.points[index].hedges[-1].winner = winner
                self._point_span(index).event("hedge settled", {"pice.winner": winner or ""})
                if winner is not None and winner == self._report.points[index].hedges[-1].hedge:
                    self._report.hedges_won += 1
            case UsageCounted(source=source, usage=usage, estimated=estimated):
                self._add_usage(source, usage, estimated=estimated)
            case JobEnded():
                self._maybe_finish()
            case ExpansionFailed(error=error):
                self._fail(error)

    def _point_done(self, done: PointDone) -> None:
        point = self._report.points[done.point]
        point.edge = done.source
        point.adapter = None if done.source == CLOUD else self._registry.adapter(done.source)
        point.finish_reason = done.finish_reason
        point.tokens = done.tokens
        point.done_ms = self._clock.ms()
        point.candidates = self._selectors[done.point].scores()
        point.winner = done.candidate if point.candidates else None
        span = self._point_span(done.point)
        span.set(
            {
                "pice.edge": done.source,
                "pice.tokens": done.tokens,
                "pice.finish_reason": done.finish_reason or "",
                "pice.attempts": point.attempts,
            }
        )
        span.end()
        shown = self._merger.done(
            done.point, done.text, cut=done.finish_reason == "length", tokens=done.tokens
        )
        point.trimmed = self._merger.trimmed(done.point)
        if self._watch:  # before the answer text it lets out
            body = self._merger.text_of(done.point)
            self._watched(watch.point_done(done, body, point.trimmed))
        self._emit(shown)
        self._maybe_finish()

    def _point_span(self, index: int) -> Span:
        """Point ``index``'s span, from its first placement to its chosen text."""
        if index not in self._point_spans:
            self._point_spans[index] = self._tracing.start(
                "pice.point", parent=self._span, attributes={"pice.point": index}
            )
        return self._point_spans[index]

    def _add_usage(self, source: str, usage: Usage, *, estimated: bool = False) -> None:
        if source == CLOUD:
            self._report.cloud_usage = self._report.cloud_usage + usage
        else:
            self._report.edge_usage = self._report.edge_usage + usage
        self._report.usage_estimated |= estimated

    # -- output ------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if self._finished:
            return
        if text:
            self._send(self._stop.feed(text))
        # Finished goes out now; the consumer's close cancels what is still running.
        if self._stop.stopped:
            self._finish("stop")
        elif self._merger.exhausted:
            self._report.cut_by_limit = True
            # The point cut live is closed by the merger before its source's end arrives.
            for index, point in enumerate(self._report.points):
                point.trimmed = self._merger.trimmed(index) or point.trimmed
                point.shown = self._merger.shown(index)
            self._finish("length")

    def _watched(self, event: watch.WatchEvent) -> None:
        """Queue ``event`` for the client (callers check ``_watch`` first, so that a run nobody
        watches does not even build the events)."""
        if not self._finished:
            self._queue.put_nowait(Watched(event))

    def _send(self, text: str) -> None:
        if not text:
            return
        if self._report.timings.first_token_ms is None:
            self._report.timings.first_token_ms = self._clock.ms()
        self._queue.put_nowait(TextOut(text))

    def _maybe_finish(self) -> None:
        if self._sketch_done and self._merger.finished and self._dispatcher.idle:
            if self._first_dispatch_ms is not None:
                self._report.timings.expansion_ms = round(
                    self._clock.ms() - self._first_dispatch_ms, 1
                )
            if self._closing is not None:
                closing, self._closing = self._closing, None
                self._emit("\n" + closing)
            self._finish("length" if self._was_cut() else "stop")

    def _was_cut(self) -> bool:
        """Whether a token limit cut the outline or any point's shown expansion."""
        if self._sketch.finish_reason == "length":
            return True
        return any(point.finish_reason == "length" for point in self._report.points)

    def _finish(self, finish_reason: str) -> None:
        if self._finished:
            return
        # The held-back tail that could have begun a stop sequence is part of the answer.
        self._send(self._stop.flush())
        self._finished = True
        self._report.timings.total_ms = self._clock.ms()
        self._queue.put_nowait(Finished(self._report, finish_reason))

    def _fail(self, err: PiceError) -> None:
        if not self._finished:
            self._finished = True
            self._queue.put_nowait(err)
