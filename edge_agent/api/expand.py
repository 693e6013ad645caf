"""``POST /v1/expand``: every requested point of a sketch as one job, streamed as typed events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

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
from pice.http.sse import sse_done, sse_json, sse_response
from pice.openai_protocol import Usage

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
    model_id = edge_state(request).model_id
    question, history = _conversation(body)
    prompt = engine.chat.render(expansion_messages(question, body.sketch, history))
    spec, labels = build_job(body, prompt.text, prompt.add_special)
    # A full queue is a 429 here, before anything is tokenised or queued: the gateway places
    # the work elsewhere. The ticket is given back once the batcher admits the job.
    ticket = edge_state(request).queue.admit()
    try:
        # Submitting tokenises and checks the context: a job that can never fit is a 400 here,
        # before the stream starts.
        handle = engine.submit(spec)
    except BaseException:
        ticket.release()
        raise

    def close() -> None:
        ticket.release()
        handle.cancel()

    return sse_response(_events(handle, labels, model_id, ticket), on_close=close)


def _event(model: BaseModel) -> ServerSentEvent:
    return sse_json(model.model_dump(mode="json"))


async def _events(
    handle: EngineJob, labels: list[tuple[int, int]], model_id: str, ticket: Ticket
) -> AsyncIterator[ServerSentEvent]:
    async with handle:  # leaving early (client gone) cancels the job's sequences
        async for event in handle:
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
    yield sse_done()
