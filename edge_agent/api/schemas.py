"""Request and event models of the edge agent's own endpoints (see docs/edge-api.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from edge_agent.prompts import DEFAULT_STOP
from pice.openai_protocol import (
    ChatMessage,
    FinishReason,
    MaxTokens,
    OpenAIModel,
    Temperature,
    TopP,
    Usage,
)

MAX_POINTS = 32
MAX_CANDIDATES = 8


class ExpandRequest(OpenAIModel):
    question: str | None = None
    messages: list[ChatMessage] | None = None
    sketch: list[str] = Field(min_length=1, max_length=MAX_POINTS)
    points: list[Annotated[int, Field(ge=0)]] | None = None
    candidates: int = Field(default=1, ge=1, le=MAX_CANDIDATES)
    max_tokens: MaxTokens = 96
    temperature: Temperature = 0.0
    top_p: TopP = 1.0
    seed: int | None = None
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP), max_length=8)
    request_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ExpandRequest:
        if self.question is None and not self.messages:
            raise ValueError("give 'question' or 'messages'")
        if self.question is None and not any(m.role == "user" for m in self.messages or []):
            raise ValueError("'messages' has no user turn to expand")
        if self.points is not None:
            if not self.points:
                raise ValueError("'points' must name at least one point")
            if len(set(self.points)) != len(self.points):
                raise ValueError("'points' has duplicates")
            if max(self.points) >= len(self.sketch):
                raise ValueError(f"'points' must be below {len(self.sketch)} (the sketch's size)")
        return self

    def point_indices(self) -> list[int]:
        return list(range(len(self.sketch))) if self.points is None else list(self.points)


# -- events of POST /v1/expand (one JSON object per `data:` line) ----------------------


class StartEvent(BaseModel):
    type: Literal["start"] = "start"
    job_id: str
    model: str
    prompt_tokens: int
    queued_ms: float


class DeltaEvent(BaseModel):
    type: Literal["delta"] = "delta"
    point: int
    candidate: int
    text: str


class PointDoneEvent(BaseModel):
    type: Literal["point_done"] = "point_done"
    point: int
    candidate: int
    finish_reason: FinishReason
    text: str
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float
    logprob_mean: float
    ttft_ms: float | None
    duration_ms: float


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorBody


ExpandEvent = StartEvent | DeltaEvent | PointDoneEvent | DoneEvent | ErrorEvent


class LoadResponse(BaseModel):
    """``GET /v1/load``: what the gateway's scheduler reads."""

    model: str
    ready: bool
    running_sequences: int
    queued_sequences: int
    queued_jobs: int
    max_sequences: int
    free_sequence_slots: int
    kv_cells_total: int
    kv_cells_reserved: int
    kv_usage: float
    decode_tokens_per_second: float
    threads: int
    tokens_generated: int
    prefill_tokens: int
    jobs: int
    cancellations: int
    prefix_cache_entries: int
    prefix_cache_cells: int
    prefix_cache_hits: int
    prefix_cache_reused_tokens: int
