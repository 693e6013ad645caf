"""``POST /v1/expand``: every requested point of a sketch as one job, streamed as typed events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from edge_agent.api.schemas import (
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    ExpandRequest,
    PointDoneEvent,
    StartEvent,
)
from edge_agent.api.state import edge_state, ready_engine
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
from edge_agent.prompts import expansion_messages, point_stops, point_suffix
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
            )
            sequences.append(SequenceSpec(point_suffix(point, body.sketch[point]), params))
            labels.append((point, candidate))
    spec = JobSpec(prefix, tuple(sequences), request_id=body.request_id, add_special=add_special)
    return spec, labels


@router.post("/v1/expand", response_model=None)
async def expand(body: ExpandRequest, request: Request) -> EventSourceResponse:
    engine = ready_engine(request)
    state = edge_state(request)
    question, history = _conversation(body)
    prompt = engine.chat.render(expansion_messages(question, body.sketch, history))
    spec, labels = build_job(body, prompt.text, prompt.add_special)
    # A full queue is a 429 here, before anything is tokenised or queued: the gateway places
    # the work elsewhere. The ticket is given back once the batcher admits the job.
    ticket = state.queue.admit()
    try:
        # Submitting tokenises and checks the context: a job that can never fit is a 400 here,
        # before the stream starts.
        handle = engine.submit(spec)
    except BaseException:
        ticket.release()
        raise
    # A child of this request's server span, which continues the gateway's edge-job span.
    span = state.tracing.start(
        "pice.edge.job",
        attributes={
            "pice.points": body.point_indices(),
            "pice.candidates": body.candidates,
            "pice.model": state.model_id,
        },
    )
    return sse_response(
        _events(handle, labels, state.model_id, ticket, span),
        on_close=_closing(ticket, handle.cancel, span),
    )


def _closing(ticket: Ticket, cancel: Callable[[], None], span: Span) -> Callable[[], None]:
    """The stream's ``on_close``: give the queue ticket back, cancel what is left of the job,
    and end its span (a client that left before the stream started never reaches the
    generator's end). Safe after a normal finish: each step is idempotent."""

    def close() -> None:
        try:
            ticket.release()
            cancel()
        finally:
            span.end()

    return close


def _event(model: BaseModel) -> bytes:
    return sse_json(model.model_dump(mode="json"))


async def _events(
    handle: EngineJob,
    labels: list[tuple[int, int]],
    model_id: str,
    ticket: Ticket,
    span: Span,
) -> AsyncIterator[Event]:
    async with handle:  # leaving early (client gone) cancels the job's sequences
        async for event in handle:
            _trace(span, event)
            if isinstance(event, TokenDelta):
                point, candidate = labels[event.seq]
                yield _event(DeltaEvent(point=point, candidate=candidate, text=event.text))
            elif isinstance(event, SequenceDone):
                point, candidate = labels[event.seq]
                yield _event(
                    PointDoneEvent(
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
                )
            elif isinstance(event, JobStarted):
                ticket.release()  # admitted: no longer queued
                yield _event(
                    StartEvent(
                        job_id=event.job_id,
                        model=model_id,
                        prompt_tokens=event.prompt_tokens,
                        queued_ms=event.queued_ms,
                    )
                )
            elif isinstance(event, JobDone):
                usage = Usage.of(event.prompt_tokens, event.completion_tokens)
                yield _event(DoneEvent(usage=usage))
            elif isinstance(event, JobFailed):
                body = event.error.to_body()["error"]
                yield _event(ErrorEvent(error=ErrorBody(**body)))
    span.end()
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
