"""Placement variants tried in ``pice sim`` while looking for eft's tail (not gateway policies).

Each variant is built from the gateway's own estimators (:mod:`pice_gateway.placement.estimate`)
and run on the sweep's fleet and requests, seed by seed:

- ``eft-greedy``: eft as it was, the point's own expected finish only;
- ``eft``: the gateway's eft (own finish + the delay it adds to the sequences beside it);
- ``eft-lengths``: the gateway's eft told each point's true length (an oracle the gateway
  does not have): its score scales with the length, so the choice barely changes;
- ``eft-slack``: request-aware: a point that the request's already-placed points outlast
  anyway (it has slack) goes to the edge where it costs the others least, else as eft;
- ``deadline-lengths``: with true lengths, the slowest device that finishes the point within
  ``--deadline`` seconds, else the earliest finish: keeps fast edges' batches small for long
  points (what the fluid estimate in ``sim_fluid_bound.py`` says knowing lengths is worth);
- ``deadline-mean``: the same rule given only what the gateway knows (the running mean).

    python benchmarks/sim_variants.py --load 0.8 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace

from pice_bench.sim.engine import Simulation, Workload, rate_for_load, workload_requests
from pice_bench.sim.sweep import SimConfig
from pice_gateway.placement.base import EdgeStatus, PlacementPolicy, PointPlacement, usable
from pice_gateway.placement.eft import EftPolicy, prior_curve
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS, added_delay, expected_finish

Lengths = list[list[int]]
Arrivals = list[float]


def scored(
    point: PointPlacement, edges: Sequence[EdgeStatus], tokens: float
) -> list[tuple[float, float, EdgeStatus]]:
    """(own finish, own finish + delay to the others, edge) for each usable edge."""
    prior = prior_curve(edges)
    out = []
    for edge in edges:
        if usable(edge, point):
            curve = edge.rate or prior
            finish = expected_finish(edge, tokens, curve)
            out.append((finish, finish + added_delay(edge, tokens, curve), edge))
    return out


class Greedy:
    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        options = scored(point, edges, point.expected_tokens or DEFAULT_POINT_TOKENS)
        if not options:
            return None
        return min(options, key=lambda o: (o[0], o[2].in_flight, o[2].last_placed))[2].name


class TrueLengths:
    def __init__(self, lengths: Lengths) -> None:
        self._lengths, self._inner = lengths, EftPolicy()

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        tokens = float(self._lengths[int(point.request_id)][point.point])
        return self._inner.place(dataclasses.replace(point, expected_tokens=tokens), edges)


class Slack:
    """Keeps each request's latest expected finish (absolute, from the sim's sketch timing)."""

    def __init__(self, arrivals: Arrivals, workload: Workload) -> None:
        self._arrivals, self._workload = arrivals, workload
        self._finish: dict[int, float] = {}

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        r = int(point.request_id)
        now = (
            self._arrivals[r]
            + self._workload.sketch_first
            + point.point * self._workload.sketch_per_point
        )
        options = scored(point, edges, point.expected_tokens or DEFAULT_POINT_TOKENS)
        if not options:
            return None
        latest = self._finish.get(r)
        fits = [o for o in options if latest is not None and now + o[0] <= latest]
        best = min(fits or options, key=lambda o: (o[1], o[2].in_flight, o[2].last_placed))
        self._finish[r] = max(latest or 0.0, now + best[0])
        return best[2].name


class Deadline:
    """``lengths`` None: the point's ``expected_tokens`` (the gateway's running mean)."""

    def __init__(self, lengths: Lengths | None, deadline: float) -> None:
        self._lengths, self._deadline = lengths, deadline

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        if self._lengths is None:
            tokens = point.expected_tokens or DEFAULT_POINT_TOKENS
        else:
            tokens = float(self._lengths[int(point.request_id)][point.point])
        options = scored(point, edges, tokens)
        if not options:
            return None
        prior = prior_curve(edges)
        fits = [o for o in options if o[0] <= self._deadline]
        if fits:
            slowest = min(fits, key=lambda o: ((o[2].rate or prior).single, o[2].last_placed))
            return slowest[2].name
        return min(options, key=lambda o: (o[0], o[2].in_flight, o[2].last_placed))[2].name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--deadline", type=float, default=2.5)
    args = parser.parse_args()
    out = sys.stdout
    out.write(f"load {args.load}\n\n| variant | p95 s per seed | mean p95 | mean p50 |\n")
    out.write("|---|---|---|---|\n")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        config = SimConfig(workload=Workload(duration=args.duration, warmup=args.warmup), seed=seed)
        edges = config.fleet()
        workload = replace(config.workload, rate=rate_for_load(args.load, edges, config.workload))
        requests = workload_requests(workload, seed)
        lengths = [r.lengths for r in requests]
        # Fresh policies for each seed (eft-slack keeps per-request state).
        variants: dict[str, PlacementPolicy] = {
            "eft-greedy": Greedy(),
            "eft": EftPolicy(),
            "eft-lengths": TrueLengths(lengths),
            "eft-slack": Slack([r.arrival for r in requests], workload),
            "deadline-lengths": Deadline(lengths, args.deadline),
            "deadline-mean": Deadline(None, args.deadline),
        }
        for name, policy in variants.items():
            # The rate fit of the committed results (before 2026-12-05: the decode rate).
            simulation = Simulation(edges, workload, policy, seed=seed, rate_from="decode")
            result = simulation.run(name, args.load)
            rows.setdefault(name, []).append((result.p95, result.p50))
    for name, runs in rows.items():
        shown = ", ".join(f"{p95:.2f}" for p95, _ in runs)
        mean95 = statistics.mean(p95 for p95, _ in runs)
        mean50 = statistics.mean(p50 for _, p50 in runs)
        out.write(f"| {name} | {shown} | {mean95:.2f} | {mean50:.2f} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
