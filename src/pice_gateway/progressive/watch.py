"""The opt-in stream of point-level events (``"pice": {"events": true}``): PICE at work.

A streamed request that opts in gets, between its ordinary chunks, one SSE *comment* per event:
``: pice {"type": "point_start", ...}``. Comments, not named events: every SSE parser must skip
a comment line, while the OpenAI Python SDK does not skip an event with an ``event:`` name (it
parses its ``data`` as one more chunk, ``openai/_streaming.py``). So an SDK that did not ask
sees exactly the chunks and text it would see without the option; a client that did ask (the
playground page) reads the comments that start with ``pice``. docs/openai.md has the schema.

Each event is a typed model here, the wire schema written once; the pure functions below turn
what the router, the sketch and dispatch report into them, and the pipeline and the routes only
pass them on. Without the opt-in none of this runs and the stream is unchanged, byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from pice.http.sse import sse_comment
from pice_gateway.progressive import events

# The comment's first word: what a reader matches (``: pice {...}``), leaving other comments
# (sse-starlette's ``: ping``) alone.
TAG = "pice"


class Route(BaseModel):
    """Which path the request took, first of all; the same as the final ``pice`` report's."""

    type: Literal["route"] = "route"
    mode: Literal["progressive", "cloud"]
    # "outline", "model", "router", "no_edges", "unsupported:<field>", "load:<rule>".
    reason: str
    # The router's decision (model ``pice`` with the router on), and the decision from load.
    router: dict[str, Any] | None = None
    load: dict[str, Any] | None = None


class SketchDelta(BaseModel):
    """More of the sketch as the cloud writes it (the outline, or ``DIRECT`` and an answer)."""

    type: Literal["sketch_delta"] = "sketch_delta"
    text: str


class SketchDone(BaseModel):
    """The sketch ended: an outline of ``points`` points, or (``outline`` false) an answer."""

    type: Literal["sketch_done"] = "sketch_done"
    outline: bool
    points: int


class PointFound(BaseModel):
    """The sketch named point ``point`` (0-based); it is placed at once."""

    type: Literal["point_found"] = "point_found"
    point: int
    title: str
    # The heading of the list it is in, when a framed sketch wrote more than one.
    section: str | None = None


class PointStart(BaseModel):
    """An attempt at ``point`` runs on ``source`` (an edge's name, or ``cloud``)."""

    type: Literal["point_start"] = "point_start"
    point: int
    source: str
    candidates: int


class PointDelta(BaseModel):
    """More text of one candidate of the running attempt (every candidate, not only the shown)."""

    type: Literal["point_delta"] = "point_delta"
    point: int
    source: str
    candidate: int
    text: str


class PointDone(BaseModel):
    """The point is finished: ``text`` is its body as the answer shows it."""

    type: Literal["point_done"] = "point_done"
    point: int
    source: str
    candidate: int
    text: str
    finish_reason: str | None
    tokens: int
    # Why ``text`` is shorter than the source wrote ("loop", "length"; ``PointReport.trimmed``).
    trimmed: str | None = None


class Failover(BaseModel):
    """The attempt at ``point`` on ``source`` failed; a ``point_start`` elsewhere follows."""

    type: Literal["failover"] = "failover"
    point: int
    source: str
    reason: str


class Hedge(BaseModel):
    """``point``, late on ``source``, is duplicated on ``hedge`` (``progressive.hedging``)."""

    type: Literal["hedge"] = "hedge"
    point: int
    source: str
    hedge: str
    elapsed_s: float
    estimate_s: float


class HedgeSettled(BaseModel):
    """The race of a hedged point ended: ``winner`` finished it (``None``: neither did)."""

    type: Literal["hedge_settled"] = "hedge_settled"
    point: int
    winner: str | None


WatchEvent = (
    Route
    | SketchDelta
    | SketchDone
    | PointFound
    | PointStart
    | PointDelta
    | PointDone
    | Failover
    | Hedge
    | HedgeSettled
)


def encode(event: WatchEvent) -> bytes:
    """``event`` as one SSE comment line.

    ASCII-only JSON: a raw U+2028 or U+0085 in a point's text would be a line break to a
    parser that splits decoded text with ``str.splitlines``, and would cut the comment short.
    """
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=True)
    return sse_comment(f"{TAG} {data}")


def from_dispatch(event: events.DispatchEvent) -> WatchEvent | None:
    """What a client watching the run sees of one dispatch event (``None``: nothing).

    A finished candidate is not reported here: the pipeline reports the point once its chosen
    candidate is known (:func:`point_done`), with the text the answer shows.
    """
    match event:
        case events.PointStarted(point=point, source=source, candidates=candidates):
            return PointStart(point=point, source=source, candidates=candidates)
        case events.PointDelta(point=point, source=source, candidate=candidate, text=text):
            return PointDelta(point=point, source=source, candidate=candidate, text=text)
        case events.PointFailed(point=point, source=source, reason=reason):
            return Failover(point=point, source=source, reason=reason)
        case events.PointHedged():
            return Hedge(
                point=event.point,
                source=event.source,
                hedge=event.hedge,
                elapsed_s=round(event.elapsed, 3),
                estimate_s=round(event.estimate, 3),
            )
        case events.HedgeSettled(point=point, winner=winner):
            return HedgeSettled(point=point, winner=winner)
    return None


def point_done(done: events.PointDone, shown: str, trimmed: str | None = None) -> PointDone:
    """The chosen candidate ``done`` of a point whose body the answer shows as ``shown``."""
    return PointDone(
        point=done.point,
        source=done.source,
        candidate=done.candidate,
        text=shown,
        finish_reason=done.finish_reason,
        tokens=done.tokens,
        trimmed=trimmed,
    )
