"""The discrete-event simulation of one gateway, its cloud sketcher and a fleet of edges.

What is simulated, and what is the gateway's own code:

- requests arrive as a Poisson process; each names k points (uniform in ``points``) of random
  length (lognormal around ``mean_tokens``, capped at ``max_tokens``); the cloud writes the
  sketch, point i becoming known ``sketch_first + i·sketch_per_point`` seconds after arrival;
- every point is placed, when it becomes known, by **the gateway's policy object**
  (``PlacementPolicy.place``) over :class:`~pice_gateway.placement.base.EdgeStatus` snapshots
  built like :class:`~pice_gateway.edges.EdgeRegistry` builds them: the edge's last load record
  (polled every ``poll_interval``), this gateway's in-flight count, the round trip measured at
  each poll (the gateway's EWMA) and the rate curve fitted by the gateway's
  :class:`~pice_gateway.placement.rate.RateFit` from the reports (with ``rate_from="points"``,
  the default as in the gateway, from the points seen finish once enough have); the point's
  expected length
  is the gateway's running mean of finished points (starting at ``progressive``'s default),
  or with ``Workload.length_signal`` a per-point prediction of a given quality;
- the point travels half a round trip to its edge, decodes there (:mod:`.edge`), and its
  result half a round trip back; a request's latency runs from its arrival to its last point's
  result at the gateway. Points a policy leaves to the cloud decode at ``cloud_rate``.

With hedging (a policy named ``<policy>+hedge``), each point placed on an edge also schedules
the gateway's own hedging decision (:mod:`pice_gateway.placement.hedging`): at
``factor × estimate + floor`` after placement, a point not yet back at the gateway is duplicated
on an edge with a free slot chosen by the same policy; the first result to reach the gateway
wins and the other attempt is cancelled on its edge (or dropped in transit), giving its slot
back at once, as dispatch does. With ``migration`` (:class:`Migration`, a what-if) the late
point moves instead: its attempt stops and the other edge decodes only what it had left.

Requests arriving during the warm-up are served but not measured; after ``duration`` no new
request arrives and the run goes on until every measured request finished. Deterministic for a
seed: the workload (arrivals, k, lengths) comes from its own generator, so every policy is
measured on the same requests. ``given`` requests (a recorded run, :mod:`.testbed`) replace
the draw, and ``edges`` built by the caller may share a core (:meth:`SimEdge.neighbours`).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from pice.edge_protocol import ExpandEvent, ExpandRequest, LoadResponse
from pice_bench.sim.edge import SimEdge, SimSequence
from pice_bench.sim.profiles import EdgeProfile
from pice_bench.stats import percentile
from pice_gateway.edges import Edge
from pice_gateway.placement.base import PlacementPolicy, PointPlacement, busy_sequences
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS
from pice_gateway.placement.hedging import HedgeRule, estimate_on, hedge_target
from pice_gateway.placement.rate import RateFrom, ewma


@dataclass(frozen=True)
class Workload:
    rate: float = 1.0  # requests per second
    duration: float = 300.0  # seconds of arrivals
    warmup: float = 30.0  # seconds of arrivals not measured
    points: tuple[int, int] = (3, 8)
    mean_tokens: float = 40.0
    sigma: float = 0.5  # of the lognormal point length
    max_tokens: int = 96
    sketch_first: float = 0.4  # seconds to the first point of a sketch
    sketch_per_point: float = 0.25
    poll_interval: float = 1.0
    cloud_rate: float = 30.0  # tok/s per point the cloud expands itself
    # The share of the log-length variance a length prediction the gateway sees explains
    # (held-out R²); None: no prediction, the gateway's running mean (see ``predicted_length``).
    length_signal: float | None = None

    def mean_points(self) -> float:
        return (self.points[0] + self.points[1]) / 2.0

    def mean_point_tokens(self) -> float:
        """The mean of the capped lognormal lengths (close enough: the cap cuts far out)."""
        return self.mean_tokens


def rate_for_load(load: float, fleet: list[EdgeProfile], workload: Workload) -> float:
    """The arrival rate whose decoding is ``load`` times the fleet's saturated throughput."""
    capacity = sum(edge.capacity() for edge in fleet)
    return load * capacity / (workload.mean_points() * workload.mean_point_tokens())


class _Kind(IntEnum):
    # At the same instant: results first, then arrivals at edges, then placement, then polls.
    RESULT = 0
    EDGE_DONE = 1
    AT_EDGE = 2
    POINT = 3
    ARRIVAL = 4
    POLL = 5
    HEDGE = 6


@dataclass
class _Request:
    arrival: float
    lengths: list[int]
    measured: bool
    left: int = 0
    # Per point, the length the gateway predicts (``Workload.length_signal``), or None.
    predicted: list[float] | None = None


@dataclass
class RunResult:
    policy: str
    load: float
    rate: float
    latencies: list[float] = field(repr=False)
    cloud_points: int
    points: int
    sim_seconds: float
    events: int
    # Points duplicated by hedging, and those whose duplicate's result came back first.
    hedges: int = 0
    hedges_won: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    def summary(self) -> dict[str, float | int | str]:
        return {
            "policy": self.policy,
            "load": self.load,
            "rate_rps": round(self.rate, 3),
            "requests": len(self.latencies),
            "p50_s": round(self.p50, 4),
            "p95_s": round(self.p95, 4),
            "mean_s": round(sum(self.latencies) / max(1, len(self.latencies)), 4),
            "points": self.points,
            "cloud_points": self.cloud_points,
            "hedges": self.hedges,
            "hedges_won": self.hedges_won,
            "sim_seconds": round(self.sim_seconds, 1),
            "events": self.events,
        }


def workload_requests(workload: Workload, seed: int) -> list[_Request]:
    """The requests of a run: arrival times, k and point lengths (the same for every policy)."""
    rng = random.Random(seed)
    requests = []
    t = rng.expovariate(workload.rate)
    mu = math.log(workload.mean_tokens) - workload.sigma**2 / 2.0
    while t < workload.duration:
        k = rng.randint(*workload.points)
        lengths = [
            max(1, min(workload.max_tokens, round(rng.lognormvariate(mu, workload.sigma))))
            for _ in range(k)
        ]
        requests.append(_Request(t, lengths, measured=t >= workload.warmup))
        t += rng.expovariate(workload.rate)
    if workload.length_signal is not None:
        predict = random.Random(f"{seed}-predicted-lengths")
        for request in requests:
            request.predicted = [
                predicted_length(length, workload, predict) for length in request.lengths
            ]
    return requests


def predicted_length(length: int, workload: Workload, rng: random.Random) -> float:
    """A prediction of ``length`` that explains ``workload.length_signal`` of its log variance.

    The lengths are drawn as without a prediction (so every run of a seed decodes the same
    points); the prediction is drawn given the length. With ``z = log L − μ`` ~ N(0, σ²) split
    into an explained part ``x`` ~ N(0, R²σ²) and a residual of variance ``(1 − R²)σ²``, the
    explained part given ``z`` is N(R²·z, R²(1 − R²)σ²); the prediction is the mean length
    given it, ``exp(μ + x + (1 − R²)σ²/2)``, capped like the lengths. R² = 1 is the true length,
    R² = 0 the workload's mean for every point. (Capping and rounding the length first bends
    this slightly for the ~2% of points at the cap.)
    """
    share = min(1.0, max(0.0, workload.length_signal or 0.0))
    sigma = workload.sigma
    mu = math.log(workload.mean_tokens) - sigma**2 / 2.0
    z = math.log(length) - mu
    explained = rng.gauss(share * z, math.sqrt(share * (1.0 - share)) * sigma)
    residual_var = (1.0 - share) * sigma**2
    return min(float(workload.max_tokens), math.exp(mu + explained + residual_var / 2.0))


class _Unreachable:
    """The client an :class:`~pice_gateway.edges.Edge` needs; the simulation never calls it."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def expand(self, request: ExpandRequest) -> AsyncGenerator[ExpandEvent, None]:
        raise NotImplementedError("a simulated edge is not reached over HTTP")

    async def load(self) -> LoadResponse:
        raise NotImplementedError("a simulated edge is not reached over HTTP")

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class Migration:
    """A what-if the gateway cannot do yet: a late point *moves* instead of being duplicated.

    With hedging on, a point due by the gateway's rule (:mod:`pice_gateway.placement.hedging`)
    and running on its edge goes to the edge the rule picks, its first attempt cancelled at
    once, and the new edge decodes only the tokens it had left, plus ``prefill_tokens`` (reading
    the prompt and the text so far, in decode-token equivalents; 0 is the optimistic case). It
    models an edge protocol that continues a point's text on another edge; today's hedges
    start from the prompt. A point still queued or on the link is not moved.
    """

    prefill_tokens: int = 0


@dataclass(frozen=True)
class GivenRequest:
    """A request given instead of drawn (a recorded run replayed, :mod:`.testbed`): its arrival,
    its points' lengths and, per point, when after the arrival the sketch names it."""

    arrival: float
    lengths: tuple[int, ...]
    ready: tuple[float, ...]


class Simulation:
    def __init__(
        self,
        fleet: list[EdgeProfile],
        workload: Workload,
        policy: PlacementPolicy,
        *,
        seed: int = 0,
        progress: Callable[[float], None] | None = None,
        hedging: HedgeRule | None = None,
        migration: Migration | None = None,
        given: Sequence[GivenRequest] | None = None,
        edges: Sequence[SimEdge] | None = None,
        rate_from: RateFrom = "points",
    ) -> None:
        self._fleet = fleet
        # Which rate curve the snapshots carry (``progressive.placement_rate``).
        self._rate_from: RateFrom = rate_from
        # Requests to run instead of the workload's draw (its rate, points and sketch unused).
        self._given = given
        self._workload = workload
        self._policy = policy
        self._seed = seed
        self._progress = progress
        # ``edges``: the fleet's edges built by the caller (edges sharing a core, ``testbed``).
        self._edges = list(edges) if edges is not None else [SimEdge(p) for p in fleet]
        self._neighbours = [
            [self._edges.index(n) for n in edge.neighbours()] for edge in self._edges
        ]
        # The gateway's own per-edge state (load, in-flight count, round trip, rate fit); its
        # ``status()`` is the snapshot the policy reads, rebuilt only when it changes.
        self._gateway = [Edge(_Unreachable(profile.name)) for profile in fleet]
        self._status = [edge.status(rate_from) for edge in self._gateway]
        self._index = {profile.name: i for i, profile in enumerate(fleet)}
        self._point_tokens = DEFAULT_POINT_TOKENS
        self._events: list[tuple[float, int, int, tuple[int, ...]]] = []
        self._order = 0
        self._link_rng = random.Random(seed + 1)
        self._hedging = hedging or HedgeRule()
        # Per point still out, the edges holding an attempt of it (more than one once hedged),
        # and the edge of its duplicate.
        self._live: dict[tuple[int, int], list[int]] = {}
        self._duplicate: dict[tuple[int, int], int] = {}
        # Per point placed on a free slot, as dispatch keeps it for the outcome fit: its edge,
        # when, the batch it joined and the round trip then.
        self._timed: dict[tuple[int, int], tuple[int, float, int, float]] = {}
        self._hedges = self._hedges_won = 0
        # With ``migration``: per moved point, the tokens its new attempt decodes.
        self._migration = migration
        self._carried: dict[tuple[int, int], int] = {}

    def _push(self, t: float, kind: _Kind, *data: int) -> None:
        self._order += 1
        heapq.heappush(self._events, (t, kind * 10**12 + self._order, kind, data))

    def _one_way(self, i: int) -> float:
        return self._fleet[i].link.round_trip(self._link_rng) / 2.0

    def _reschedule(self, i: int) -> None:
        self._schedule_finish(i)
        # Edges sharing i's core change speed with its batch, so their next finish moves: the
        # version bump voids the completion event computed at their old speed.
        for j in self._neighbours[i]:
            self._edges[j].version += 1
            self._schedule_finish(j)

    def _schedule_finish(self, i: int) -> None:
        edge = self._edges[i]
        when = edge.next_finish()
        if when is not None:
            self._push(when, _Kind.EDGE_DONE, i, edge.version)

    def run(self, policy_name: str = "", load: float = math.nan) -> RunResult:
        workload = self._workload
        given = self._given
        requests = (
            workload_requests(workload, self._seed)
            if given is None
            else [_Request(g.arrival, list(g.lengths), g.arrival >= workload.warmup) for g in given]
        )
        for r, request in enumerate(requests):
            request.left = len(request.lengths)
            self._push(request.arrival, _Kind.ARRIVAL, r)
        self._push(0.0, _Kind.POLL)
        outstanding = sum(1 for request in requests if request.measured)
        latencies: list[float] = []
        cloud_points = points = events = 0
        next_report = workload.duration / 10.0
        t = 0.0
        while self._events and outstanding:
            t, _, kind, data = heapq.heappop(self._events)
            events += 1
            if self._progress is not None and t >= next_report:
                self._progress(t)
                next_report += workload.duration / 10.0
            if kind == _Kind.ARRIVAL:
                (r,) = data
                for p in range(len(requests[r].lengths)):
                    ready = t + (
                        given[r].ready[p]
                        if given is not None
                        else workload.sketch_first + p * workload.sketch_per_point
                    )
                    self._push(ready, _Kind.POINT, r, p)
            elif kind == _Kind.POINT:
                r, p = data
                points += 1
                placement = self._placement(requests[r], r, p)
                name = self._policy.place(placement, self._status)
                if name is not None and self._hedging.enabled:
                    i = self._index[name]
                    tokens = placement.expected_tokens or DEFAULT_POINT_TOKENS
                    estimate = estimate_on(self._status[i], self._status, tokens)
                    self._push(t + self._hedging.deadline(estimate), _Kind.HEDGE, r, p, i)
                if name is None:
                    cloud_points += 1
                    done = t + requests[r].lengths[p] / workload.cloud_rate
                    self._push(done, _Kind.RESULT, r, p, -1)
                    continue
                i = self._index[name]
                status = self._status[i]
                busy = busy_sequences(status)
                if status.load is None or busy < status.load.max_sequences:
                    self._timed[(r, p)] = (i, t, busy + 1, status.rtt or 0.0)
                self._gateway[i].in_flight += 1
                self._gateway[i].last_placed = t
                self._status[i] = self._gateway[i].status(self._rate_from)
                self._live[(r, p)] = [i]
                self._push(t + self._one_way(i), _Kind.AT_EDGE, i, r, p)
            elif kind == _Kind.HEDGE:
                r, p, i = data
                self._hedge(t, requests[r], r, p, i)
            elif kind == _Kind.AT_EDGE:
                i, r, p = data
                if i not in self._live.get((r, p), ()):
                    continue  # the other attempt already won: this one is dropped in transit
                edge = self._edges[i]
                edge.advance(t)
                edge.arrive(SimSequence(r, p, self._tokens_to_decode(requests[r], r, p)))
                self._reschedule(i)
            elif kind == _Kind.EDGE_DONE:
                i, version = data
                edge = self._edges[i]
                if version != edge.version:
                    continue
                edge.advance(t)
                for sequence in edge.finish_due():
                    self._push(
                        t + self._one_way(i), _Kind.RESULT, sequence.request, sequence.point, i
                    )
                self._reschedule(i)
            elif kind == _Kind.RESULT:
                r, p, i = data
                request = requests[r]
                if i >= 0:
                    live = self._live.pop((r, p), None)
                    if live is None or i not in live:
                        continue  # the loser's result, already cancelled
                    if self._duplicate.pop((r, p), None) == i:
                        self._hedges_won += 1
                    timed = self._timed.pop((r, p), None)
                    if timed is not None and timed[0] == i:
                        _, placed, batch, rtt = timed
                        self._gateway[i].observe_finish(batch, request.lengths[p], t - placed - rtt)
                    for k in live:
                        self._release(t, k, r, p, cancel=k != i)
                    self._point_tokens = ewma(self._point_tokens, request.lengths[p], weight=0.05)
                request.left -= 1
                if not request.left and request.measured:
                    latencies.append(t - request.arrival)
                    outstanding -= 1
            elif kind == _Kind.POLL:
                self._poll(t)
                self._push(t + workload.poll_interval, _Kind.POLL)
        return RunResult(
            policy=policy_name,
            load=load,
            rate=workload.rate,
            latencies=latencies,
            cloud_points=cloud_points,
            points=points,
            sim_seconds=t,
            events=events,
            hedges=self._hedges,
            hedges_won=self._hedges_won,
        )

    def _placement(self, request: _Request, r: int, p: int) -> PointPlacement:
        """What dispatch hands the policy: the point's predicted length when the workload has a
        length signal, else the running mean of finished points (capped by the budget)."""
        expected = self._point_tokens if request.predicted is None else request.predicted[p]
        return PointPlacement(
            request_id=str(r),
            point=p,
            title="",
            excluded=frozenset(),
            expected_tokens=min(self._workload.max_tokens, expected),
        )

    def _tokens_to_decode(self, request: _Request, r: int, p: int) -> int:
        """Tokens an attempt of point ``p`` of ``r`` decodes on the edge it reaches: the whole
        point (an attempt, the gateway's hedges included, starts from the prompt), or what a
        migrated point had left."""
        return self._carried.pop((r, p), request.lengths[p])

    def _hedge(self, t: float, request: _Request, r: int, p: int, i: int) -> None:
        """The gateway's hedging decision for point ``p`` of request ``r``, placed on ``i``."""
        live = self._live.get((r, p))
        if live != [i]:
            return  # back already, or already hedged
        left: float | None = None
        if self._migration is not None:
            self._edges[i].advance(t)
            left = self._edges[i].remaining(r, p)
            if left is None:
                return  # queued on its edge or still on the link: nothing to carry over
        placement = self._placement(request, r, p)
        name = hedge_target(placement, self._fleet[i].name, self._status, self._policy)
        if name is None:
            return  # no spare slot: the sim, unlike dispatch, does not look again
        j = self._index[name]
        self._hedges += 1
        self._duplicate[(r, p)] = j
        if self._migration is not None and left is not None:
            # Moved, not duplicated: the first attempt stops now, the new one goes on from it.
            self._carried[(r, p)] = max(1, math.ceil(left)) + self._migration.prefill_tokens
            self._release(t, i, r, p, cancel=True)
            live.remove(i)
        live.append(j)
        self._gateway[j].in_flight += 1
        self._gateway[j].last_placed = t
        self._status[j] = self._gateway[j].status(self._rate_from)
        self._push(t + self._one_way(j), _Kind.AT_EDGE, j, r, p)

    def _release(self, t: float, i: int, r: int, p: int, *, cancel: bool) -> None:
        """Edge ``i`` no longer holds point ``p`` of ``r`` for this gateway; ``cancel``: the
        losing attempt, cancelled on the edge if it is still there."""
        self._gateway[i].in_flight -= 1
        self._status[i] = self._gateway[i].status(self._rate_from)
        if cancel:
            edge = self._edges[i]
            edge.advance(t)
            if edge.cancel(r, p):
                self._reschedule(i)

    def _poll(self, t: float) -> None:
        """What the registry's poller does: the load record, the timed round trip, the fit."""
        for i, edge in enumerate(self._edges):
            edge.advance(t)
            round_trip = self._fleet[i].link.round_trip(self._link_rng)
            self._gateway[i].record_load(edge.load(), round_trip)
            self._status[i] = self._gateway[i].status(self._rate_from)
