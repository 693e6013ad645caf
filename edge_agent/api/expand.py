"""``POST /v1/expand``: every requested point of a sketch as one job, streamed as typed events."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from edge_agent.api.schemas import (
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    ExpandEvent,
    ExpandRequest,
    PointDoneEvent,
    StartEvent,
)
from edge_agent.api.state import EdgeState, edge_state, ready
from edge_agent.engine import (
    JobDone,
    JobFailed,
    JobSpec,
    JobStarted,
    SamplingParams,
    SequenceDone,
    SequenceSpec,
    TokenDelta,
)
from edge_agent.engine.backend import EngineJob
from edge_agent.engine.chat_template import Message
from edge_agent.prompts import BODY_MAX_WORDS, expansion_messages, point_stops, point_suffix
from pice.admission import Ticket
from pice.http.sse import Event, sse_done, sse_json, sse_response
from pice.openai_protocol import Usage
from pice.tracing import Span

logger = logging.getLogger(__name__)
router = APIRouter()


def _conversation(body: ExpandRequest) -> tuple[str, list[Message]]:
    """The question to expand and the earlier turns it follows (system messages dropped)."""
    if body.question is not None:
        return body.question, []
    turns = [
        Message(m.role, m.text()) for m in body.messages or [] if m.role in ("user", "assistant")
    ]
    last_user = max(i for i, m in enumerate(turns) if m.role == "user")
    return turns[last_user].content, turns[:last_user]


def candidate_temperature(body: ExpandRequest, candidate: int) -> float:
    """Candidate 0 decodes with the request's own sampling (greedy by default), so a point's
    first candidate is what a single-candidate request would get; the others use
    ``candidate_temperature`` when given, which is what makes them differ."""
    if candidate == 0 or body.candidate_temperature is None:
        return body.temperature
    return body.candidate_temperature


def build_job(
    body: ExpandRequest, prefix: str, add_special: bool
) -> tuple[JobSpec, list[tuple[int, int]]]:
    """The job, and for each of its sequences the (point, candidate) it expands."""
    sequences: list[SequenceSpec] = []
    labels: list[tuple[int, int]] = []
    for point in body.point_indices():
        for candidate in range(body.candidates):
            # Distinct seeds per (point, candidate); with no seed each sequence draws its own.
            seed = None if body.seed is None else body.seed + 1000 * point + candidate
            params = SamplingParams(
                temperature=candidate_temperature(body, candidate),
                top_p=body.top_p,
                seed=seed,
                presence_penalty=body.presence_penalty,
                frequency_penalty=body.frequency_penalty,
                max_tokens=body.max_tokens,
                stop=point_stops(point, body.stop),
                # A point's body is prose: a loop in it is never wanted, and decoding it to
                # the point's share would hold the whole answer up.
                stop_loops=True,
            )
            sequences.append(SequenceSpec(point_suffix(point, body.sketch[point]), params))
            labels.append((point, candidate))
    spec = JobSpec(prefix, tuple(sequences), request_id=body.request_id, add_special=add_special)
    return spec, labels


@dataclass
class ExpandJob:
    """A submitted ``/v1/expand`` job, whichever transport carries it (HTTP here, the reverse
    channel in :mod:`edge_agent.api.channel`): its events as the wire models, and its close."""

    handle: EngineJob
    labels: list[tuple[int, int]]
    model_id: str
    ticket: Ticket
    span: Span

    def close(self) -> None:
        """Give the queue ticket back, cancel what is left of the job, and end its span (a
        client that left before the stream started never reaches the events' end). Safe
        after a normal finish: each step is idempotent."""
        try:
            self.ticket.release()
            self.handle.cancel()
        finally:
            self.span.end()

    async def events(self) -> AsyncGenerator[ExpandEvent, None]:
        """The job's events up to ``done`` or ``error``; leaving early cancels the job."""
        labels, span = self.labels, self.span
        async with self.handle:  # leaving early (client gone) cancels the job's sequences
            async for event in self.handle:
                _trace(span, event)
                if isinstance(event, TokenDelta):
                    point, candidate = labels[event.seq]
                    yield DeltaEvent(point=point, candidate=candidate, text=event.text)
                elif isinstance(event, SequenceDone):
                    point, candidate = labels[event.seq]
                    yield PointDoneEvent(
                        point=point,
                        candidate=candidate,
                        finish_reason=event.finish_reason,
                        text=event.text,
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                        logprob_sum=event.logprob_sum,
                        logprob_mean=event.logprob_mean,
                        ttft_ms=event.ttft_ms,
                        duration_ms=event.duration_ms,
                    )
                elif isinstance(event, JobStarted):
                    self.ticket.release()  # admitted: no longer queued
                    yield StartEvent(
                        job_id=event.job_id,
                        model=self.model_id,
                        prompt_tokens=event.prompt_tokens,
                        queued_ms=event.queued_ms,
                    )
                elif isinstance(event, JobDone):
                    usage = Usage.of(event.prompt_tokens, event.completion_tokens)
                    yield DoneEvent(usage=usage)
                elif isinstance(event, JobFailed):
                    body = event.error.to_body()["error"]
                    yield ErrorEvent(error=ErrorBody(**body))
        span.end()


def start_expand(state: EdgeState, body: ExpandRequest) -> ExpandJob:
    """Admit and submit one expand job; raises a :class:`~pice.errors.PiceError` (a status
    code on HTTP, ``refused`` on the channel) when it cannot start: the model still loading
    (503), the job queue full (429, so the gateway places the work elsewhere), a job that can
    never fit the context (400). Nothing is tokenised or queued before the queue admits it."""
    engine = ready(state)
    question, history = _conversation(body)
    words = body.point_words or BODY_MAX_WORDS
    prompt = engine.chat.render(expansion_messages(question, body.sketch, history, words=words))
    spec, labels = build_job(body, prompt.text, prompt.add_special)
    # The ticket is given back once the batcher admits the job.
    ticket = state.queue.admit()
    try:
        # Submitting tokenises and checks the context.
        handle = engine.submit(spec)
    except BaseException:
        ticket.release()
        raise
    # On HTTP a child of this request's server span, which continues the gateway's edge-job span.
    span = state.tracing.start(
        "pice.edge.job",
        attributes={
            "pice.points": body.point_indices(),
            "pice.candidates": body.candidates,
            "pice.model": state.model_id,
        },
    )
    return ExpandJob(handle, labels, state.model_id, ticket, span)


@router.post("/v1/expand", response_model=None)
async def expand(body: ExpandRequest, request: Request) -> EventSourceResponse:
    job = start_expand(edge_state(request), body)
    return sse_response(_sse(job), on_close=job.close)


async def _sse(job: ExpandJob) -> AsyncIterator[Event]:
    async for event in job.events():
        yield sse_json(event.model_dump(mode="json"))
    yield sse_done()


def _trace(span: Span, event: object) -> None:
    """What the job's span and the log record of its events (one line per job; the log
    filter stamps it with the gateway's request id)."""
    if isinstance(event, JobStarted):
        span.set({"pice.prompt_tokens": event.prompt_tokens, "pice.queued_ms": event.queued_ms})
    elif isinstance(event, JobDone):
        span.set({"pice.completion_tokens": event.completion_tokens})
        logger.info(
            "expand job done: prompt_tokens=%d completion_tokens=%d",
            event.prompt_tokens,
            event.completion_tokens,
        )
    elif isinstance(event, JobFailed):
        span.fail(event.error.message)
        logger.warning("expand job failed: %s", event.error.message)
