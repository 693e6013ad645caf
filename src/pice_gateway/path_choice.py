"""Which path a chat request takes: progressive (sketch + edges) or straight to the cloud."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pice.errors import InvalidRequestError, ModelNotFoundError
from pice.openai_protocol import ChatCompletionRequest, ResponseFormat
from pice_gateway.router.model import RouteDecision
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
    if isinstance(value, ResponseFormat):
        return value.type != "text"
    if name == "response_format" and isinstance(value, dict):
        return bool(value.get("type", "text") != "text")
    return not (name == "tool_choice" and value == "none")


def _field(request: ChatCompletionRequest, name: str) -> Any:
    """A field's value, typed (declared in the protocol) or as sent (an unknown field)."""
    if name in type(request).model_fields:
        return getattr(request, name)
    return (request.model_extra or {}).get(name)


def progressive_blocker(request: ChatCompletionRequest) -> str | None:
    """The first request field the progressive path cannot honour, or ``None``."""
    if request.n > 1:
        return "n"
    for name in _UNSUPPORTED_FIELDS:
        if _is_set(name, _field(request, name)):
            return name
    if request.messages[-1].role != "user" or any(m.role == "tool" for m in request.messages):
        return "messages"
    return None


@dataclass(frozen=True)
class PathChoice:
    """The path a request takes; ``reason`` becomes the ``pice`` report's ``reason``."""

    mode: Literal["progressive", "cloud"]
    # Why: "model", "no_edges", "unsupported:<param>", "router" (the router chose a direct
    # answer), or "outline" for the progressive path.
    reason: str
    # Whether the sketch may decide to answer directly instead of outlining (model ``pice``
    # without a router); a router that has decided turns this off.
    allow_direct: bool = False
    # The router's decision, when it made one (``pice`` with the router enabled).
    route: RouteDecision | None = None
    # The decision from load (``pice_gateway.load_decision``) and its inputs, when it ran; and
    # the points it allows the sketch (``None``: the setting's own).
    load: dict[str, Any] | None = None
    max_points: int | None = None

    @property
    def wants_route(self) -> bool:
        """``pice`` may go either way and nothing has decided yet: ask the router."""
        return self.allow_direct and self.route is None


def choose_path(
    request: ChatCompletionRequest, models: ModelNames, *, edges_up: bool
) -> PathChoice:
    """Choose by model name; an unknown model is a 404, an unusable field on pice-progressive a 400.

    ``pice`` takes the progressive path when it can (no such field, an edge up) and lets the
    sketch answer directly; otherwise it goes to the cloud, which honours every field.
    """
    if request.model == models.cloud:
        return PathChoice("cloud", "model")
    if request.model == models.progressive:
        blocker = progressive_blocker(request)
        if blocker is not None:
            raise InvalidRequestError(
                f"'{blocker}' is not supported by the progressive model '{models.progressive}'; "
                f"use '{models.auto}' or '{models.cloud}'.",
                param=blocker,
                code="unsupported_parameter",
            )
        return PathChoice("progressive", "outline")
    if request.model == models.auto:
        blocker = progressive_blocker(request)
        if blocker is not None:
            return PathChoice("cloud", f"unsupported:{blocker}")
        if not edges_up:
            return PathChoice("cloud", "no_edges")
        return PathChoice("progressive", "outline", allow_direct=True)
    raise ModelNotFoundError(request.model)


def apply_route(choice: PathChoice, decision: RouteDecision) -> PathChoice:
    """The path after the router: an outline stays progressive (the sketch no longer gets to
    answer directly), a direct answer goes to the cloud with the user's own messages."""
    if decision.route == "direct":
        return PathChoice("cloud", "router", route=decision)
    return replace(choice, allow_direct=False, route=decision)
