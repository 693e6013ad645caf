"""Which path a chat request takes: progressive (sketch + edges) or straight to the cloud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pice.errors import InvalidRequestError, ModelNotFoundError
from pice.openai_protocol import ChatCompletionRequest
from pice_gateway.settings import ModelNames

# Request fields the progressive path cannot honour (the answer is a merged outline written by
# several models, so there is one choice, no tool calls, no forced format, no token logprobs).
_UNSUPPORTED_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "audio",
    "prediction",
)


def _is_set(name: str, value: Any) -> bool:
    if value in (None, False, [], {}):
        return False
    if name == "response_format" and isinstance(value, dict):
        return bool(value.get("type", "text") != "text")
    return not (name == "tool_choice" and value == "none")


def progressive_blocker(request: ChatCompletionRequest) -> str | None:
    """The first request field the progressive path cannot honour, or ``None``."""
    if request.n > 1:
        return "n"
    extra = request.model_extra or {}
    for name in _UNSUPPORTED_FIELDS:
        if _is_set(name, extra.get(name)):
            return name
    if request.messages[-1].role != "user" or any(m.role == "tool" for m in request.messages):
        return "messages"
    return None


@dataclass(frozen=True)
class Route:
    mode: Literal["progressive", "cloud"]
    # Why: "model", "no_edges", "unsupported:<param>", or "outline" for the progressive path.
    reason: str
    # Whether the sketch may decide to answer directly instead of outlining.
    allow_direct: bool = False


def choose_route(request: ChatCompletionRequest, models: ModelNames, *, edges_up: bool) -> Route:
    """Route by model name; unknown models are a 404, unusable fields on pice-progressive a 400."""
    if request.model == models.cloud:
        return Route("cloud", "model")
    if request.model == models.progressive:
        blocker = progressive_blocker(request)
        if blocker is not None:
            raise InvalidRequestError(
                f"'{blocker}' is not supported by the progressive model '{models.progressive}'; "
                f"use '{models.auto}' or '{models.cloud}'.",
                param=blocker,
                code="unsupported_parameter",
            )
        return Route("progressive", "outline")
    if request.model == models.auto:
        blocker = progressive_blocker(request)
        if blocker is not None:
            return Route("cloud", f"unsupported:{blocker}")
        if not edges_up:
            return Route("cloud", "no_edges")
        return Route("progressive", "outline", allow_direct=True)
    raise ModelNotFoundError(request.model)
