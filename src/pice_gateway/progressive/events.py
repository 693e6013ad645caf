"""What dispatch reports to the run: one event per thing that happened to an expansion.

A point is expanded by one *attempt* at a time on one *source* (an edge's name, or
:data:`~pice_gateway.cloud_client.CLOUD`); an attempt may decode several *candidates* of the point
(``candidate`` is their index, 0 when there is one), and the run's candidate selector chooses
which one the answer shows (:mod:`pice_gateway.progressive.candidates`). An attempt that fails
is followed by another on a different source, until the cloud itself expands the point.

Per point, in order: ``PointStarted``, then ``PointDelta``* and ``PointDone`` per candidate, or
``PointFailed`` and a new ``PointStarted``. ``UsageCounted``, ``JobEnded`` and
``ExpansionFailed`` concern jobs and the request rather than one point.
"""

from __future__ import annotations

from dataclasses import dataclass

from pice.errors import PiceError
from pice.openai_protocol import Usage
from pice_gateway.placement.estimate import Finish


@dataclass(frozen=True)
class Overflow:
    """Why a point the policy put on ``edge`` went to the cloud (``placement.overflow``):
    the expected finish there and on the cloud, seconds."""

    edge: str
    edge_finish: float
    cloud_finish: float


@dataclass(frozen=True)
class PointStarted:
    """An attempt at ``point`` was placed on ``source``, decoding ``candidates`` candidates."""

    point: int
    source: str
    candidates: int = 1
    # Set when cloud overflow moved the point from the policy's edge to the cloud.
    overflow: Overflow | None = None
    # The placement's expected finish on ``source`` with its inputs (the eft estimate, whatever
    # the policy); ``None`` on the cloud and for a hedge promoted to the attempt.
    estimate: Finish | None = None


@dataclass(frozen=True)
class PointDelta:
    """More body text of one candidate."""

    point: int
    source: str
    candidate: int
    text: str


@dataclass(frozen=True)
class PointDone:
    """One candidate finished.

    ``text`` is its whole body when the source reports one (an edge does; it replaces what the
    deltas built), ``None`` when the deltas are the whole body (the cloud). ``logprob_mean`` is
    the edge's mean token log-probability, one of the ensemble's criteria.
    """

    point: int
    source: str
    candidate: int
    text: str | None
    finish_reason: str | None
    tokens: int
    logprob_mean: float | None = None
    # The model (and adapter) that wrote it, as its edge last reported; ``None``: the cloud,
    # or not known. The ensemble compares log-probabilities only under one model.
    model: str | None = None


@dataclass(frozen=True)
class PointFailed:
    """The attempt at ``point`` on ``source`` failed; a new ``PointStarted`` follows."""

    point: int
    source: str
    reason: str


@dataclass(frozen=True)
class PointHedged:
    """``point``, late on ``source``, is duplicated on ``hedge`` (:mod:`..placement.hedging`).

    The duplicate's text is held back: the client keeps seeing ``source``'s. If the duplicate
    finishes first (or ``source`` fails), a ``PointFailed`` for ``source`` and a
    ``PointStarted`` for ``hedge`` follow, and the duplicate continues after what was sent.
    """

    point: int
    source: str
    hedge: str
    # Seconds since the point was placed, and its expected finish then.
    elapsed: float
    estimate: float


@dataclass(frozen=True)
class HedgeSettled:
    """The race of a hedged point ended: ``winner`` finished it (or ``None``: neither did)."""

    point: int
    winner: str | None


@dataclass(frozen=True)
class UsageCounted:
    """Tokens one job used; ``estimated`` when counted from events the job got to send."""

    source: str
    usage: Usage
    estimated: bool = False


@dataclass(frozen=True)
class JobEnded:
    """A job on ``source`` ended, so the dispatcher may have become idle."""

    source: str


@dataclass(frozen=True)
class ExpansionFailed:
    """A point could not be expanded anywhere (the cloud failed too): the request fails."""

    error: PiceError


PointEvent = PointStarted | PointDelta | PointDone | PointFailed
HedgeEvent = PointHedged | HedgeSettled
DispatchEvent = PointEvent | HedgeEvent | UsageCounted | JobEnded | ExpansionFailed
