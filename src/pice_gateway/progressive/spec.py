"""What one progressive request asks of the cloud and the edges, derived once from settings.

Token budgets: a request's ``max_tokens`` (or ``max_completion_tokens``) caps the sketch and
*each* point's expansion, not their sum, since the points are written in parallel. Sampling:
the request's ``temperature``, ``top_p`` and ``seed`` apply to the expansions; the sketch keeps
its own temperature (a steady outline format matters more than variety). Ensemble candidates
1..k-1 sample at ``progressive.ensemble_temperature`` instead (candidate 0 keeps the request's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pice.edge_protocol import ExpandRequest
from pice.openai_protocol import ChatCompletionRequest, ChatMessage
from pice_gateway.progressive.expand_prompt import cloud_expansion_messages
from pice_gateway.progressive.options import pice_options
from pice_gateway.progressive.sketch import sketch_messages
from pice_gateway.settings import GatewaySettings


def _capped(budget: int, limit: int | None) -> int:
    return min(budget, limit) if limit else budget


def sketch_payload(
    settings: GatewaySettings, request: ChatCompletionRequest, *, allow_direct: bool
) -> dict[str, Any]:
    """The cloud chat request that writes the outline (or, when allowed, a direct answer)."""
    knobs = settings.progressive
    budget = knobs.direct_max_tokens if allow_direct else knobs.sketch_max_tokens
    return {
        "model": settings.cloud.model,
        "messages": sketch_messages(request.messages, allow_direct=allow_direct),
        "max_tokens": _capped(budget, request.token_limit()),
        "temperature": knobs.sketch_temperature,
    }


@dataclass(frozen=True)
class ExpansionSpec:
    """What every expansion of one request shares, on an edge or on the cloud."""

    request_id: str
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float
    top_p: float | None
    seed: int | None
    stall_seconds: float
    cloud_model: str
    # Candidates per point on an edge when it has room (``placement.candidates`` decides per
    # point); the run's selector shows one.
    candidates: int = 1
    candidate_temperature: float = 0.7
    # The most points a sketch may name (the k rule keeps a slot for each one still to come).
    max_points: int = 8
    # How long a job may wait on the edge for admission (its ``start`` event); the stall bound
    # applies only after it.
    queue_seconds: float = 120.0

    @classmethod
    def for_request(
        cls, settings: GatewaySettings, request: ChatCompletionRequest, request_id: str
    ) -> ExpansionSpec:
        knobs = settings.progressive
        return cls(
            request_id=request_id,
            messages=[{"role": m.role, "content": m.text()} for m in request.messages],
            max_tokens=_capped(knobs.expansion_max_tokens, request.token_limit()),
            temperature=request.temperature
            if request.temperature is not None
            else knobs.expansion_temperature,
            top_p=request.top_p,
            seed=request.seed,
            stall_seconds=knobs.edge_stall_seconds,
            cloud_model=settings.cloud.model,
            candidates=pice_options(request).candidates or knobs.ensemble_candidates,
            candidate_temperature=knobs.ensemble_temperature,
            max_points=knobs.max_points,
            queue_seconds=knobs.edge_queue_seconds,
        )

    def sampling(self) -> dict[str, Any]:
        """The sampling fields, as both ``/v1/expand`` and chat completions name them."""
        fields: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_p is not None:
            fields["top_p"] = self.top_p
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields

    def expand_request(
        self, outline: list[str], points: list[int], candidates: int = 1
    ) -> ExpandRequest:
        """The ``/v1/expand`` job for ``points`` of ``outline`` (every title known so far),
        ``candidates`` per point; the ensemble fields are sent only when there is a choice, so a
        single-candidate job's body is what it was before the ensemble."""
        extra: dict[str, Any] = {}
        if candidates > 1:
            extra = {"candidates": candidates, "candidate_temperature": self.candidate_temperature}
        return ExpandRequest(
            messages=[ChatMessage(role=m["role"], content=m["content"]) for m in self.messages],
            sketch=outline,
            points=points,
            request_id=self.request_id,
            **self.sampling(),
            **extra,
        )

    def cloud_payload(self, outline: list[str], point: int) -> dict[str, Any]:
        """The cloud chat request that expands ``point`` itself (no edge could)."""
        return {
            "model": self.cloud_model,
            "messages": cloud_expansion_messages(self.messages, outline, point),
            **self.sampling(),
        }
