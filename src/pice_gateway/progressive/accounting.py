"""What a request cost and how it ran: summed usage and the ``pice`` extension object."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from pice.openai_protocol import Usage
from pice_gateway.placement.estimate import Finish
from pice_gateway.placement.rate import RateSource
from pice_gateway.progressive.tidy import Trimmed

Mode = Literal["progressive", "cloud"]


class CandidateReport(BaseModel):
    """One scored candidate of a point (see :mod:`pice_gateway.progressive.ensemble`)."""

    candidate: int
    edge: str
    score: float
    logprob_mean: float | None
    agreement: float
    relevance: float
    tokens: int
    finish_reason: str | None


class HedgeReport(BaseModel):
    """One duplicate of a late point (``progressive.hedging``)."""

    # Where the point was running, and where it was duplicated.
    source: str
    hedge: str
    # Seconds from its placement to the hedge, and its expected finish at placement.
    after_s: float
    estimate_s: float
    # Which attempt finished the point; ``None`` while racing, or when the hedge failed.
    winner: str | None = None


class OverflowReport(BaseModel):
    """A point cloud overflow moved from the policy's edge to the cloud
    (``progressive.cloud_overflow``): the expected finish on each, seconds."""

    edge: str
    edge_finish_s: float
    cloud_finish_s: float


class EstimateReport(BaseModel):
    """What a point's ``estimate_s`` was computed from (:func:`~pice_gateway.placement.estimate.
    finish_on`): ``estimate_s = rtt_s + wait_s + decode_s``, ``decode_s`` being ``tokens`` at
    the per-sequence rate of the curve (``rate``, ``alpha``) at the batch the point joined."""

    tokens: float
    # Sequences on the edge then (running or queued, by its last poll and this gateway's count)
    # and its sequence slots.
    busy: int
    slots: int
    # The rate curve used: one sequence's tokens/s and the batching slope, and what it was
    # fitted to: "points" (the edge's finished points), "decode" (its reported decode rate) or
    # "prior" (neither yet: the fleet's prior stood in).
    rate: float
    alpha: float
    rate_source: RateSource
    rtt_s: float
    wait_s: float
    decode_s: float

    @classmethod
    def of(cls, finish: Finish) -> EstimateReport:
        return cls(
            tokens=round(finish.tokens, 1),
            busy=finish.busy,
            slots=finish.slots,
            rate=round(finish.single_rate, 3),
            alpha=round(finish.alpha, 3),
            rate_source=finish.rate_source,
            rtt_s=round(finish.rtt, 4),
            wait_s=round(finish.wait, 3),
            decode_s=round(finish.decode, 3),
        )


class PointReport(BaseModel):
    title: str
    # The heading of the list the point is in, when a framed sketch wrote more than one.
    section: str | None = None
    # The edge's name, or "cloud" when the cloud expanded the point itself.
    edge: str | None = None
    # The LoRA adapter that edge serves (its last /v1/load), or ``None`` for a stock model.
    adapter: str | None = None
    finish_reason: str | None = None
    tokens: int = 0
    # Why the shown body is shorter than what the source wrote: "loop" (shown up to a loop,
    # then to its last full sentence), "length" (cut by its token share: ended on its last
    # full sentence, or marked with an ellipsis); ``None``: shown as written.
    trimmed: Trimmed | None = None
    # Every source that tried this point, in order (more than one after a failover).
    attempts: list[str] = Field(default_factory=list)
    # When the point was first placed and when its shown text ended, in milliseconds since the
    # request arrived, and the expected finish the gateway computed at that first placement on
    # an edge (seconds after it: the eft estimate, whatever the policy; ``None`` when the point
    # went to the cloud). With one attempt, ``done_ms - placed_ms`` is what the estimate
    # predicted: the record an operator checks the scheduler's estimator against, with the
    # inputs it came from in ``estimate``.
    placed_ms: float | None = None
    done_ms: float | None = None
    estimate_s: float | None = None
    estimate: EstimateReport | None = None
    # The ensemble's choice: every candidate of the last attempt with its score, and the index
    # of the one shown; empty and ``None`` when the point had one candidate (no choice made).
    candidates: list[CandidateReport] = Field(default_factory=list)
    winner: int | None = None
    hedges: list[HedgeReport] = Field(default_factory=list)
    overflow: OverflowReport | None = None
    # False for a point the sketch named after the request's ``max_tokens`` had ended the
    # answer (``PiceReport.cut_by_limit``): never shown, its work cancelled.
    shown: bool = True


class SketchReport(BaseModel):
    """The cloud request that wrote the outline (or the direct answer it turned into)."""

    # The model it named: ``cloud.sketch_model`` for an outline-only sketch, else ``cloud.model``.
    model: str
    # Asked for a frame (``progressive.frame``), and whether it wrote each part of it.
    frame: bool = False
    opening: bool = False
    closing: bool = False


class Timings(BaseModel):
    sketch_ms: float | None = None
    first_token_ms: float | None = None
    expansion_ms: float | None = None
    total_ms: float | None = None


class PiceReport(BaseModel):
    """The ``pice`` object added to a completion and to the last chunk of a stream."""

    mode: Mode
    # Why this mode: "outline", "direct" (the sketch chose to answer), "no_edges",
    # "model" (pice-cloud), or "unsupported:<param>".
    reason: str
    # The sketch request, on the progressive path (``None`` on the cloud path: no sketch).
    sketch: SketchReport | None = None
    # The body length the points were asked for, in words (``progressive.point_words`` or the
    # request's ``pice.point_words``); ``None``: the edge prompt's own.
    point_words: int | None = None
    points: list[PointReport] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    cloud_usage: Usage = Field(default_factory=Usage)
    edge_usage: Usage = Field(default_factory=Usage)
    # True when a cloud stream was closed early and its tokens were counted from chunks.
    usage_estimated: bool = False
    # The router's decision for model ``pice``: decision, score, threshold, version, ms.
    router: dict[str, Any] | None = None
    # The decision from load, with its inputs (``pice_gateway.load_decision``), when it ran.
    load: dict[str, Any] | None = None
    # Points duplicated by hedging, and how many of those the duplicate won (metrics count
    # these; the per-point detail is in ``points[].hedges``).
    hedges: int = 0
    hedges_won: int = 0
    # The cloud's whole answer (a framed sketch's prose fallback) was stopped at the end of the
    # sentence where it began repeating a passage (``pice_gateway.cloud_loops``).
    loop_stopped: bool = False
    # The request's ``max_tokens`` ended the answer: a point was cut at what the limit left it
    # (its ``trimmed`` is "length"), and the points after it were not shown.
    cut_by_limit: bool = False


class Clock:
    """Milliseconds since the request arrived."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self._start) * 1000.0, 1)


def total_usage(report: PiceReport) -> Usage:
    return report.cloud_usage + report.edge_usage
