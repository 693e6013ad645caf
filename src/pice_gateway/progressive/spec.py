"""What one progressive request asks of the cloud and the edges, derived once from settings.

Token budget: a request's ``max_tokens`` (or ``max_completion_tokens``) bounds the whole
answer. :func:`answer_budget` gives the sketch its share before anything is written; the rest
is the points' bodies' together (``body_tokens``), spent in point order as the merger shows
them (:mod:`~pice_gateway.progressive.merge`): each point may write up to the server's cap, and
the answer is cut where the bodies reach the limit, as a model's answer is cut at its
``max_tokens``. Sampling:
the request's ``temperature``, ``top_p`` and ``seed`` apply to the expansions; the sketch keeps
its own temperature (a steady outline format matters more than variety), and no penalties (a
frequency penalty on the outline's digits and newlines would break its format); the penalties
apply to the expansions, on the edges' samplers and on the cloud alike. Ensemble candidates
1..k-1 sample at ``progressive.ensemble_temperature`` instead (candidate 0 keeps the request's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pice.edge_protocol import ExpandRequest
from pice.openai_protocol import ChatCompletionRequest, ChatMessage
from pice_gateway.progressive.expand_prompt import cloud_expansion_messages
from pice_gateway.progressive.options import pice_options
from pice_gateway.progressive.sketch import sketch_messages
from pice_gateway.settings import GatewaySettings


@dataclass(frozen=True)
class AnswerBudget:
    """Completion tokens for the sketch and for each point, how many points there may be, and
    what the shown bodies may take together (``None``: no limit but each point's own)."""

    sketch_tokens: int
    point_tokens: int
    max_points: int
    # True when the request's limit lowered a server default (a cut is then reported as
    # ``finish_reason: "length"`` by the request's own doing).
    limited: bool = False
    body_tokens: int | None = None


# Tokens a framed sketch's opening line takes, about (the 1.5B's openings run 4 to 29 words).
# A request's limit that splits the sketch's share by the caps alone leaves an opening nothing
# to list after: at ``max_tokens: 200`` the sketch gets 34 tokens, and a 20-token opening left
# one point. A framed sketch gets this much on top of its share, taken from the points'.
FRAME_TOKENS = 32


def answer_budget(
    limit: int | None,
    *,
    sketch_max: int,
    point_max: int,
    max_points: int,
    frame_tokens: int = 0,
) -> AnswerBudget:
    """Split the request's token ``limit`` between the sketch and the points' bodies.

    Without a limit, or with one at least ``sketch_max + max_points * point_max`` (the most the
    server's own caps allow), nothing changes. Below that, the sketch gets its share of the
    limit in proportion to the caps (``limit * sketch_max / full``, at least one token), and the
    rest is the bodies' (``body_tokens``): each point may write up to ``point_max`` of it, and
    the merger stops showing bodies where they reach it, so that ``sketch_tokens +
    body_tokens <= limit`` holds for ``limit >= 2`` (the sketch's titles are shown as the
    points' headers). The points are dispatched while the sketch is still naming them, so
    the share of one cannot wait for the count; an equal share for ``max_points`` points
    (the earlier rule) cut most points of a typical four- to six-point outline at moderate
    limits (76 tokens each at 768) while most of the limit went unused. Ensemble candidates
    that are not shown are not part of the answer and are not counted against it (they are
    in ``usage``).

    ``frame_tokens`` (a framed sketch's opening, :data:`FRAME_TOKENS`) go to the sketch on top
    of its share, as far as the limit leaves the points one token each.
    """
    full = sketch_max + max_points * point_max
    if limit is None or limit >= full:
        return AnswerBudget(sketch_max, point_max, max_points)
    sketch = max(1, limit * sketch_max // full)
    sketch = min(sketch_max, sketch + max(0, min(frame_tokens, limit - sketch - max_points)))
    rest = max(1, limit - sketch)
    return AnswerBudget(
        sketch_tokens=sketch,
        point_tokens=min(point_max, rest),
        max_points=max(1, min(max_points, rest)),
        limited=True,
        body_tokens=rest,
    )


# Tokens a word of a point's body takes at most, about: the default prompt's 40 words fit
# the default 96 tokens a point.
TOKENS_PER_WORD = 2.4


def point_words(settings: GatewaySettings, request: ChatCompletionRequest) -> int | None:
    """The body length the request asks points for: its ``pice.point_words``, else the
    setting; ``None`` leaves it to the edge's prompt."""
    return pice_options(request).point_words or settings.progressive.point_words


def request_budget(
    settings: GatewaySettings, request: ChatCompletionRequest, *, frame: bool = False
) -> AnswerBudget:
    """The request's budget; a point asked for more words than ``expansion_max_tokens``
    holds gets the tokens they take (the request's own limit still bounds the answer); a
    framed sketch (:func:`sketch_frame`) gets its opening's tokens first."""
    knobs = settings.progressive
    point_max = knobs.expansion_max_tokens
    words = point_words(settings, request)
    if words is not None:
        point_max = max(point_max, math.ceil(words * TOKENS_PER_WORD))
    return answer_budget(
        request.token_limit(),
        sketch_max=knobs.sketch_max_tokens,
        point_max=point_max,
        max_points=knobs.max_points,
        frame_tokens=FRAME_TOKENS if frame else 0,
    )


def sketch_frame(
    settings: GatewaySettings, request: ChatCompletionRequest, *, allow_direct: bool
) -> bool:
    """Whether the sketch is asked for an opening line and a closing sentence: the request's
    ``pice.frame``, else ``progressive.frame``, else whether the outline is written by
    ``cloud.model`` itself or by a sketcher adapter that learnt the framed sketch
    (``cloud.sketch_framed``; one that learnt unframed outlines is not asked for a frame);
    only an outline-only sketch is framed."""
    if allow_direct:
        return False
    frame = pice_options(request).frame
    if frame is None:
        frame = settings.progressive.frame
    if frame is None:
        return settings.cloud.sketch_model is None or settings.cloud.sketch_framed
    return frame


def sketch_payload(
    settings: GatewaySettings,
    request: ChatCompletionRequest,
    *,
    allow_direct: bool,
    frame: bool,
    budget: AnswerBudget,
) -> dict[str, Any]:
    """The cloud chat request that writes the outline (or, when allowed, a direct answer).

    A sketch that may answer directly gets the whole limit: its answer is then the whole
    answer. When it outlines instead, the parser closes the stream at the end of the outline.

    Only a sketch that must outline names ``cloud.sketch_model``: a sketcher adapter is trained
    on outline-only prompts (``pice_tune.distill``) and would not choose a direct answer well,
    so the in-band decision of ``pice`` without a router stays with ``cloud.model``.
    ``frame`` is :func:`sketch_frame`'s answer and ``budget`` :func:`request_budget`'s,
    both decided once by the caller.
    """
    knobs = settings.progressive
    limit = request.token_limit()
    if allow_direct:
        tokens = min(knobs.direct_max_tokens, limit) if limit else knobs.direct_max_tokens
    else:
        tokens = budget.sketch_tokens
    return {
        "model": settings.cloud.model if allow_direct else settings.cloud.outline_model,
        "messages": sketch_messages(
            request.messages,
            allow_direct=allow_direct,
            frame=frame,
        ),
        "max_tokens": tokens,
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
    # The most extra candidates may slow an edge's sequences (``placement.candidates``).
    candidate_max_slowdown: float = 0.05
    # Other edges may add one candidate each (``placement.candidates.companion_edges``).
    candidate_across_edges: bool = True
    # The most points a sketch may name (the k rule keeps a slot for each one still to come).
    max_points: int = 8
    # How long a job may wait on the edge for admission (its ``start`` event); the stall bound
    # applies only after it.
    queue_seconds: float = 120.0
    # The body length the prompts ask for, in words (``progressive.point_words``); ``None``:
    # the edge's own, and the cloud's default wording.
    point_words: int | None = None
    # OpenAI's penalties, applied by the edge's sampler and by the cloud; ``None``: not set.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @classmethod
    def for_request(
        cls,
        settings: GatewaySettings,
        request: ChatCompletionRequest,
        request_id: str,
        *,
        budget: AnswerBudget,
    ) -> ExpansionSpec:
        """The spec of ``request``'s points under its :func:`request_budget`."""
        knobs = settings.progressive
        return cls(
            request_id=request_id,
            messages=[{"role": m.role, "content": m.text()} for m in request.messages],
            max_tokens=budget.point_tokens,
            temperature=request.temperature
            if request.temperature is not None
            else knobs.expansion_temperature,
            top_p=request.top_p,
            seed=request.seed,
            stall_seconds=knobs.edge_stall_seconds,
            cloud_model=settings.cloud.model,
            candidates=pice_options(request).candidates or knobs.ensemble_candidates,
            candidate_temperature=knobs.ensemble_temperature,
            candidate_max_slowdown=knobs.ensemble_max_slowdown,
            candidate_across_edges=knobs.ensemble_across_edges,
            max_points=budget.max_points,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            queue_seconds=knobs.edge_queue_seconds,
            point_words=point_words(settings, request),
        )

    def sampling(self) -> dict[str, Any]:
        """The sampling fields, as both ``/v1/expand`` and chat completions name them."""
        fields: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_p is not None:
            fields["top_p"] = self.top_p
        if self.seed is not None:
            fields["seed"] = self.seed
        if self.presence_penalty is not None:
            fields["presence_penalty"] = self.presence_penalty
        if self.frequency_penalty is not None:
            fields["frequency_penalty"] = self.frequency_penalty
        return fields

    def expand_request(
        self,
        outline: list[str],
        points: list[int],
        candidates: int = 1,
        *,
        sample_as: int | None = None,
    ) -> ExpandRequest:
        """The ``/v1/expand`` job for ``points`` of ``outline`` (every title known so far),
        ``candidates`` per point; the ensemble fields are sent only when there is a choice, and
        ``point_words`` only when set, so a single-candidate job's body is what it was before
        either. ``sample_as``: this one-candidate job is candidate ``sample_as`` of its point
        (a companion on another edge of the same model), so it samples as candidates 1..k-1
        do, at the ensemble's temperature and with a seed of its own."""
        extra: dict[str, Any] = {}
        if candidates > 1:
            extra = {"candidates": candidates, "candidate_temperature": self.candidate_temperature}
        if self.point_words is not None:
            extra["point_words"] = self.point_words
        sampling = self.sampling()
        if sample_as is not None:
            sampling["temperature"] = self.candidate_temperature
            if self.seed is not None:
                sampling["seed"] = self.seed + sample_as
        return ExpandRequest(
            messages=[ChatMessage(role=m["role"], content=m["content"]) for m in self.messages],
            sketch=outline,
            points=points,
            request_id=self.request_id,
            **sampling,
            **extra,
        )

    def cloud_payload(self, outline: list[str], point: int) -> dict[str, Any]:
        """The cloud chat request that expands ``point`` itself (no edge could)."""
        return {
            "model": self.cloud_model,
            "messages": cloud_expansion_messages(
                self.messages, outline, point, words=self.point_words
            ),
            **self.sampling(),
        }
