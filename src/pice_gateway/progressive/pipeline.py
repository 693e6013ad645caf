"""One progressive request: sketch on the cloud, expand on edges, merge, account.

Cancellation path: the response layer iterates :meth:`ProgressiveRun.events`. When the client
disconnects, sse-starlette cancels the task iterating it (for a non-streamed request,
:func:`pice.http.disconnect.until_disconnect` cancels the handler), and the generator's
``finally`` calls :meth:`ProgressiveRun.aclose`. That cancels every task of the run: the sketch
reader and each edge or cloud expansion job. Each of those holds its upstream response inside
``async with client.stream(...)``, so cancelling it closes the connection; the cloud stops
generating and each edge agent cancels the job's sequences at its next decode step and frees
their KV cells (docs/edge-api.md). Nothing of the request keeps running after the client left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from pice.errors import PiceError
from pice.openai_protocol import ChatCompletionRequest, Usage
from pice_gateway.cloud import CLOUD, CloudTextStream
from pice_gateway.edges import EdgeRegistry
from pice_gateway.progressive.accounting import Clock, PiceReport, PointReport
from pice_gateway.progressive.dispatch import Dispatcher, ExpansionSpec
from pice_gateway.progressive.merge import Merger
from pice_gateway.progressive.sketch import (
    DirectText,
    PointFound,
    SketchEvent,
    SketchParser,
    sketch_messages,
)
from pice_gateway.scheduling.base import Scheduler
from pice_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextOut:
    """Answer text to send now."""

    text: str


@dataclass(frozen=True)
class Finished:
    report: PiceReport
    finish_reason: str


RunEvent = TextOut | Finished


@dataclass(frozen=True)
class Upstreams:
    """The shared clients a run uses (owned by the app's lifespan)."""

    cloud: httpx.AsyncClient
    registry: EdgeRegistry
    scheduler: Scheduler


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
    ) -> None:
        self._upstreams = upstreams
        self._settings = settings
        self._request = request
        self._allow_direct = allow_direct
        self._clock = clock or Clock()
        self._queue: asyncio.Queue[RunEvent | PiceError] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stack = contextlib.AsyncExitStack()
        self._merger = Merger()
        self._report = PiceReport(mode="progressive", reason="outline")
        self._sketch_done = False
        self._finished = False
        self._closed = False
        self._first_dispatch_ms: float | None = None

        knobs = settings.progressive
        limit = request.token_limit()
        sketch_budget = knobs.direct_max_tokens if allow_direct else knobs.sketch_max_tokens
        self._sketch = CloudTextStream(
            upstreams.cloud,
            {
                "model": settings.cloud.model,
                "messages": sketch_messages(request.messages, allow_direct=allow_direct),
                "max_tokens": min(sketch_budget, limit) if limit else sketch_budget,
                "temperature": knobs.sketch_temperature,
            },
        )
        self._dispatcher = Dispatcher(
            registry=upstreams.registry,
            scheduler=upstreams.scheduler,
            cloud=upstreams.cloud,
            spec=ExpansionSpec(
                request_id=request_id,
                messages=[{"role": m.role, "content": m.text()} for m in request.messages],
                # A request's max_tokens caps every point (and the sketch), not their sum.
                max_tokens=min(knobs.expansion_max_tokens, limit)
                if limit
                else knobs.expansion_max_tokens,
                temperature=request.temperature
                if request.temperature is not None
                else knobs.expansion_temperature,
                top_p=request.top_p,
                seed=request.seed,
                stall_seconds=knobs.edge_stall_seconds,
                cloud_model=settings.cloud.model,
            ),
            titles=lambda: self._merger.titles,
            sink=self,
            spawn=self._spawn,
        )
        self._parser = SketchParser(knobs.max_points)

    async def start(self) -> None:
        """Send the sketch request; an unreachable or failing cloud raises here."""
        await self._sketch.open(self._stack)

    async def events(self) -> AsyncIterator[RunEvent]:
        """Answer text as it becomes sendable, then one :class:`Finished`; errors are raised."""
        self._spawn(self._read_sketch())
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, PiceError):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            # Shielded: a cancelled scope (sse-starlette's, on disconnect) re-cancels every
            # await, and this cleanup must run to the end even then.
            await asyncio.shield(asyncio.ensure_future(self.aclose()))

    async def aclose(self) -> None:
        """Cancel every task of the run and close every upstream stream it holds."""
        # Closed first: a job that fails while being cancelled must not start a replacement.
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._stack.aclose()

    # -- tasks -------------------------------------------------------------------------------

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            job.close()
            return
        task = asyncio.create_task(self._guard(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except PiceError as err:
            self.fail(err)
        except Exception as exc:  # a bug must end the request, not hang it
            logger.exception("progressive run failed")
            self.fail(PiceError(f"internal error: {type(exc).__name__}"))

    async def _read_sketch(self) -> None:
        parser = self._parser
        try:
            async with contextlib.aclosing(self._sketch.texts()) as texts:
                async for text in texts:
                    for event in parser.feed(text):
                        self._on_sketch_event(event)
                    if parser.ended:
                        break  # closing the stream stops the cloud writing past the outline
            for event in parser.close():
                self._on_sketch_event(event)
        finally:
            await self._stack.aclose()
        self._sketch_done = True
        self._report.timings.sketch_ms = self._clock.ms()
        self.add_usage(
            CLOUD, self._sketch.usage_or_estimate(), estimated=self._sketch.usage_estimated
        )
        if parser.is_outline:
            self._emit(self._merger.close_sketch())
            self._maybe_finish()
            return
        self._report.mode = "cloud"
        self._report.reason = "direct"
        self._finish(self._sketch.finish_reason or "stop")

    def _on_sketch_event(self, event: SketchEvent) -> None:
        if isinstance(event, PointFound):
            self._report.points.append(PointReport(title=event.title))
            self._emit(self._merger.add_point(event.index, event.title))
            if self._first_dispatch_ms is None:
                self._first_dispatch_ms = self._clock.ms()
            self._dispatcher.submit(event.index)
        elif isinstance(event, DirectText):
            self._emit(event.text)

    # -- output ------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if not text or self._finished:
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
            self._finish("stop")

    def _finish(self, finish_reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._report.timings.total_ms = self._clock.ms()
        self._queue.put_nowait(Finished(self._report, finish_reason))

    # -- PointSink ---------------------------------------------------------------------------

    def point_attempt(self, index: int, source: str) -> None:
        self._report.points[index].attempts.append(source)

    def point_delta(self, index: int, text: str) -> None:
        self._emit(self._merger.delta(index, text))

    def point_restart(self, index: int) -> None:
        self._merger.restart(index)

    def point_done(
        self, index: int, text: str | None, source: str, finish_reason: str | None, tokens: int
    ) -> None:
        point = self._report.points[index]
        point.edge = source
        point.finish_reason = finish_reason
        point.tokens = tokens
        self._emit(self._merger.done(index, text))
        self._maybe_finish()

    def add_usage(self, source: str, usage: Usage, *, estimated: bool = False) -> None:
        if source == CLOUD:
            self._report.cloud_usage = self._report.cloud_usage + usage
        else:
            self._report.edge_usage = self._report.edge_usage + usage
        self._report.usage_estimated |= estimated

    def fail(self, err: PiceError) -> None:
        if not self._finished:
            self._finished = True
            self._queue.put_nowait(err)

    def jobs_changed(self) -> None:
        self._maybe_finish()
