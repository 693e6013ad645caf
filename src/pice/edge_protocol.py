"""The edge agent's wire protocol, typed once for the agent, the gateway and the test fakes.

These messages cross the process boundary between the gateway and an edge agent
(docs/edge-api.md):

    POST /v1/expand   body  ExpandRequest
                      SSE   one ExpandEvent per ``data:`` line, then ``data: [DONE]``:
                            StartEvent, DeltaEvent*, PointDoneEvent per sequence, DoneEvent
                            (or an ErrorEvent once something failed after the stream started)
    GET  /v1/load     body  LoadResponse

and, the other way, an edge that joins a gateway by itself (``pice edge serve --join``):

    POST   /v1/edges                   body EdgeRegistration   -> RegistrationAck
    POST   /v1/edges/{name}/heartbeat                          -> RegistrationAck (404: unknown)
    DELETE /v1/edges/{name}                                    -> 204

The agent serialises these models with ``model_dump(mode="json")``; the gateway validates what
it receives with the same models (:func:`parse_expand_event`, ``LoadResponse.model_validate``),
so a field renamed on one side fails the other side's tests instead of turning into a silent
default.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, model_validator

from pice.openai_protocol import (
    ChatMessage,
    FinishReason,
    MaxTokens,
    ModelCard,
    OpenAIModel,
    Penalty,
    Temperature,
    TopP,
    Usage,
)

MAX_POINTS = 32
MAX_CANDIDATES = 8
# The longest body a request may ask the prompt for, in words (``ExpandRequest.point_words``).
MAX_POINT_WORDS = 200
# A point's body stays on its list item's line: the agent always stops a sequence at a newline
# unless the request gives its own stop strings.
DEFAULT_STOP: Final = ("\n",)


class ExpandRequest(OpenAIModel):
    """``POST /v1/expand``: expand ``points`` of ``sketch`` (all of them by default) as one job."""

    question: str | None = None
    messages: list[ChatMessage] | None = None
    sketch: list[str] = Field(min_length=1, max_length=MAX_POINTS)
    points: list[Annotated[int, Field(ge=0)]] | None = None
    candidates: int = Field(default=1, ge=1, le=MAX_CANDIDATES)
    max_tokens: MaxTokens = 96
    temperature: Temperature = 0.0
    # Candidates 1..k-1 of each point sample at this temperature (candidate 0 keeps
    # ``temperature``), so an ensemble has different texts to choose among; ``None``: every
    # candidate uses ``temperature``. An older agent ignores the field (unknown fields are
    # accepted), and then all k are decoded alike, as before.
    candidate_temperature: Temperature | None = None
    top_p: TopP = 1.0
    seed: int | None = None
    # OpenAI's penalties over each sequence's own generated tokens (0 = off). An older agent
    # ignores them (unknown fields are accepted); docs/edge-api.md says which version applies them.
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP), max_length=8)
    request_id: str | None = None
    # The body's length the expansion prompt asks for, in words; ``None``: the agent's own
    # (40, the prompt the bundled and fine-tuned models know). It is a request to the model,
    # not a cap: ``max_tokens`` is the cap. An older agent ignores the field.
    point_words: int | None = Field(default=None, ge=8, le=MAX_POINT_WORDS)

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

    def wire(self) -> dict[str, Any]:
        """The JSON body as sent: only the fields the sender set (the agent fills defaults)."""
        return self.model_dump(mode="json", exclude_unset=True)


# -- events of POST /v1/expand (one JSON object per `data:` line) ----------------------


class StartEvent(BaseModel):
    """The job was admitted and its shared prefix is being prefilled."""

    type: Literal["start"] = "start"
    job_id: str
    model: str
    prompt_tokens: int
    queued_ms: float


class DeltaEvent(BaseModel):
    """New body text of one candidate of one point (the title is never repeated)."""

    type: Literal["delta"] = "delta"
    point: int
    candidate: int
    text: str


class PointDoneEvent(BaseModel):
    """One candidate of one point finished; ``text`` is its whole body, stop strings removed."""

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
    """Every sequence of the job finished; ``usage`` counts the shared prefix once."""

    type: Literal["done"] = "done"
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEvent(BaseModel):
    """The job failed after the stream started (before it, the agent answers an error status)."""

    type: Literal["error"] = "error"
    error: ErrorBody


ExpandEvent = StartEvent | DeltaEvent | PointDoneEvent | DoneEvent | ErrorEvent

_EXPAND_EVENT: TypeAdapter[ExpandEvent] = TypeAdapter(
    Annotated[ExpandEvent, Field(discriminator="type")]
)
_EXPAND_EVENT_TYPES = frozenset(
    model.model_fields["type"].default
    for model in (StartEvent, DeltaEvent, PointDoneEvent, DoneEvent, ErrorEvent)
)


def parse_expand_event(payload: dict[str, Any]) -> ExpandEvent | None:
    """The typed event of one ``data:`` object; ``None`` for a type this side does not know.

    Unknown types are skipped rather than refused so that an agent may add event types without
    breaking older gateways; a known type with missing or mistyped fields raises
    :class:`pydantic.ValidationError`.
    """
    if payload.get("type") not in _EXPAND_EVENT_TYPES:
        return None
    return _EXPAND_EVENT.validate_python(payload)


class AdapterInfo(BaseModel):
    """A LoRA adapter an edge serves: the one it applies to every decode
    (``pice edge serve --lora``), or one served under its own model name (``--lora-module``)."""

    name: str  # the adapter file's stem
    scale: float
    # sha256 of the adapter file, so two edges can be told to serve the same one.
    sha256: str | None = None
    # Folded into the model's weights at start (``--lora-merge``), not applied per decode.
    merged: bool = False


class EdgeModelCard(ModelCard):
    """An entry of the agent's ``GET /v1/models``: an OpenAI model card plus the adapter.

    The base model's card names the context-wide adapter (``--lora``); a named adapter
    (``--lora-module NAME=...``) has a card of its own, ``id`` NAME, whose ``parent`` is the
    base model's id (as vLLM lists its LoRA modules) and whose ``adapter`` is that module's.
    """

    adapter: AdapterInfo | None = None
    parent: str | None = None


class EdgeModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EdgeModelCard]


class LoadResponse(BaseModel):
    """``GET /v1/load``: what the gateway's placement policy reads (see docs/edge-api.md)."""

    model: str
    # The active LoRA adapter; ``None`` for the stock model and from an agent that predates it.
    adapter: AdapterInfo | None = None
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
    # The mean batch (running sequences, weighted by decode time) over the same window as
    # ``decode_tokens_per_second``: the batch size that rate was measured at. ``None`` from an
    # agent that predates it; the gateway then pairs the rate with ``running_sequences``.
    decode_batch_mean: float | None = None
    threads: int
    tokens_generated: int
    prefill_tokens: int
    jobs: int
    cancellations: int
    prefix_cache_entries: int
    prefix_cache_cells: int
    prefix_cache_hits: int
    prefix_cache_reused_tokens: int


# -- membership: an edge registers with a gateway (``/v1/edges``) -----------------------

# A name is a URL path segment and part of a store key: letters, digits, ``.``, ``_``, ``-``.
EDGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def check_edge_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host and no credentials in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the edge URL must be http:// or https://")
    if not parts.hostname:
        raise ValueError("the edge URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the edge URL must not carry credentials")
    if parts.query or parts.fragment:
        raise ValueError("the edge URL must not have a query or fragment")
    return url.rstrip("/")


class EdgeCapabilities(BaseModel):
    """What an edge tells the gateway it serves when it registers."""

    model: str
    adapter: AdapterInfo | None = None
    # Sequence slots (the agent's ``max_sequences``).
    max_sequences: int = Field(ge=1)
    # Its measured decode rate, when it has one (``None`` before any decoding).
    decode_tokens_per_second: float | None = Field(default=None, ge=0)


class EdgeRegistration(BaseModel):
    """``POST /v1/edges``: edge ``name`` serves at ``url`` (how the gateway reaches it).

    Registering again under the same name refreshes it, or moves it when ``url`` changed.
    """

    name: str = Field(pattern=EDGE_NAME_PATTERN)
    url: Annotated[str, AfterValidator(check_edge_url)]
    capabilities: EdgeCapabilities


class RegistrationAck(BaseModel):
    """The gateway's answer to a registration or a heartbeat.

    ``heartbeat_seconds``: how often the edge should send ``POST /v1/edges/{name}/heartbeat``;
    missing them for ``expiry_seconds`` makes it leave. ``reachable``: whether the gateway's
    first ``/v1/load`` of the edge's URL answered (``None`` on a heartbeat), so an edge that
    advertised a URL the gateway cannot reach says so in its log.
    """

    name: str
    heartbeat_seconds: float
    expiry_seconds: float
    reachable: bool | None = None
