"""The per-request decision from load: outline on the edges, fewer points, or the cloud alone.

Decided once per request, before the sketch, from the edges' snapshots and the cloud's load:

1. **Edges saturated** — no usable edge has a free sequence slot: every point would queue, so
   model ``pice`` answers from the cloud directly (``edges_saturated``).
2. **Edges much slower than the cloud** — with ``cloud_tokens_per_second`` known, the cloud
   alone would write the whole answer (``points × tokens``) in ``points × tokens / rate``
   seconds; if the *fastest* edge's expected finish of one point (the ``eft`` estimate) is
   more than ``edge_slowdown`` times that, the outline cannot win: the cloud answers
   (``edges_slow``).
3. **Cloud busy** — this gateway already has ``cloud_busy_requests`` or more requests on the
   cloud: the cloud is the bottleneck, so the sketch is asked for ``busy_max_points`` points
   (fewer sketch tokens per request; the edges carry the rest) (``cloud_busy``).

Rules 1–2 apply only to model ``pice`` (``pice-progressive`` asks for an outline and keeps it);
rule 3 to both. Pure and synchronous; every input goes into the ``pice`` object's ``load``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.hedging import estimate_on, has_spare_slot


@dataclass(frozen=True)
class LoadRule:
    """``load_decision`` settings as the decision needs them."""

    enabled: bool = False
    cloud_tokens_per_second: float | None = None
    edge_slowdown: float = 2.0
    cloud_busy_requests: int | None = None
    busy_max_points: int = 4


@dataclass(frozen=True)
class LoadInputs:
    edges: Sequence[EdgeStatus]
    # Points the sketch may name, and tokens a point is expected to decode.
    max_points: int
    point_tokens: float
    # Requests this gateway has on the cloud now (progressive runs and cloud-only requests).
    cloud_in_flight: int
    # Model ``pice``: the cloud alone may answer.
    may_answer_directly: bool


@dataclass(frozen=True)
class LoadDecision:
    mode: Literal["progressive", "cloud"]
    # "ok", "edges_saturated", "edges_slow" or "cloud_busy".
    reason: str
    max_points: int
    inputs: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "decision": self.mode,
            "reason": self.reason,
            "max_points": self.max_points,
            **self.inputs,
        }


_ANY_POINT = PointPlacement(request_id="", point=0, title="", excluded=frozenset())


def decide(inputs: LoadInputs, rule: LoadRule) -> LoadDecision:
    edges = [edge for edge in inputs.edges if usable(edge, _ANY_POINT)]
    spare = [edge for edge in edges if has_spare_slot(edge)]
    tokens = inputs.point_tokens
    fastest = min((estimate_on(e, inputs.edges, tokens) for e in edges), default=None)
    cloud_alone = (
        inputs.max_points * tokens / rule.cloud_tokens_per_second
        if rule.cloud_tokens_per_second
        else None
    )
    facts: dict[str, Any] = {
        "edges_usable": len(edges),
        "edges_with_free_slot": len(spare),
        "edge_finish_s": None if fastest is None else round(fastest, 3),
        "cloud_alone_s": None if cloud_alone is None else round(cloud_alone, 3),
        "cloud_in_flight": inputs.cloud_in_flight,
    }
    if inputs.may_answer_directly:
        if edges and not spare:
            return LoadDecision("cloud", "edges_saturated", inputs.max_points, facts)
        if (
            fastest is not None
            and cloud_alone is not None
            and fastest > rule.edge_slowdown * cloud_alone
        ):
            return LoadDecision("cloud", "edges_slow", inputs.max_points, facts)
    if rule.cloud_busy_requests is not None and inputs.cloud_in_flight >= rule.cloud_busy_requests:
        points = min(inputs.max_points, rule.busy_max_points)
        return LoadDecision("progressive", "cloud_busy", points, facts)
    return LoadDecision("progressive", "ok", inputs.max_points, facts)
