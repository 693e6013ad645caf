"""Typed models of the OpenAI chat-completions protocol, as far as PICE speaks it.

Requests accept and keep unknown fields (``extra="allow"``) so that fields PICE does not act on
are ignored on the progressive path and forwarded to the cloud on the direct path, as vLLM's
``OpenAIBaseModel`` does, instead of failing with a 422.

The fields PICE knows are typed as strictly as OpenAI types them: pydantic's lax mode would
take ``"stream": "yes"`` as ``True`` or ``"max_tokens": "5"`` as 5, which OpenAI refuses with a
400 naming the field, so the scalar fields are strict (an int is still a valid float).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

Role = Literal["system", "user", "assistant", "developer", "tool"]

# Shared field definitions, written once.
Temperature = Annotated[float, Field(strict=True, ge=0.0, le=2.0)]
TopP = Annotated[float, Field(strict=True, gt=0.0, le=1.0)]
MaxTokens = Annotated[int, Field(strict=True, ge=1)]
Penalty = Annotated[float, Field(strict=True, ge=-2.0, le=2.0)]
MAX_STOP_SEQUENCES = 4


class OpenAIModel(BaseModel):
    """Base for request models: unknown fields are accepted and kept."""

    model_config = ConfigDict(extra="allow")


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(OpenAIModel):
    role: Role
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        """The message content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(OpenAIModel):
    include_usage: StrictBool = False


class ResponseFormat(OpenAIModel):
    """``response_format``: the three types OpenAI knows; any other is a 400."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class ChatCompletionRequest(OpenAIModel):
    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    user: StrictStr | None = None
    n: Annotated[int, Field(strict=True, ge=1, le=16)] = 1
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    response_format: ResponseFormat | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[float, Field(strict=True, ge=-100, le=100)]] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return value

    # OpenAI refuses these combinations rather than ignoring the dependent field. Field
    # validators (not a model validator) so that the 400 names the field in ``param``; the
    # field each depends on is declared before it, so it is in ``info.data`` when valid.
    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and info.data.get("stream") is False:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("logprobs") is not True:
            raise ValueError("'top_logprobs' requires 'logprobs' to be true")
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the older ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.of(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


FinishReason = Literal["stop", "length", "cancelled", "error"]


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON object, as text (OpenAI's form)


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ToolCallMessage(BaseModel):
    """An answer that calls tools: ``content`` is what the model wrote before the calls."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall]


class LogprobAlternative(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class LogprobToken(LogprobAlternative):
    top_logprobs: list[LogprobAlternative]


class ChoiceLogprobs(BaseModel):
    content: list[LogprobToken] | None
    refusal: list[LogprobToken] | None = None


def logprob_token(piece: bytes, logprob: float, top: list[tuple[bytes, float]]) -> LogprobToken:
    """OpenAI's entry for one token: its text (invalid UTF-8 replaced) and its exact bytes."""
    return LogprobToken(
        token=piece.decode(errors="replace"),
        logprob=logprob,
        bytes=list(piece),
        top_logprobs=[
            LogprobAlternative(token=t.decode(errors="replace"), logprob=lp, bytes=list(t))
            for t, lp in top
        ],
    )


class Choice(BaseModel):
    index: int
    message: ResponseMessage | ToolCallMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ToolCallChunk(ToolCall):
    """A tool call in a stream: sent whole, in one delta (``index`` orders the calls)."""

    index: int


class ToolCallDelta(BaseModel):
    content: None = None
    tool_calls: list[ToolCallChunk]


class ChunkChoice(BaseModel):
    index: int
    delta: Delta | ToolCallDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise a response model the way OpenAI clients expect (``None`` kept, not dropped)."""
    return model.model_dump(mode="json")
