"""How low can p95 go in ``pice sim``'s fleet: a fluid estimate, with and without point lengths.

At offered load ρ the fleet must decode ρ × its saturated throughput. In a fluid model each
device class runs a constant batch, so every point placed on it decodes at that batch's
per-sequence rate (:mod:`pice_gateway.placement.rate`, the sim's nominal class curves), and a
request's latency is ``max over its points of (named at + tokens / rate)``. The requests are
the simulator's workload (k uniform in 3–8, lognormal lengths mean 40 capped at 96, point i
named at 0.4 + 0.25·i s). Two searches over how the work is shared between the classes:

- **length-blind**: a point goes to a class at random in given shares (what any placement that
  knows only the mean length can do, index aside); the best shares on a grid;
- **lengths known**: points up to ``t1`` tokens on the Orin Nanos, up to ``t2`` on the NX, the
  rest on the AGX; the best thresholds on a grid.

It leaves out batch fluctuations, links and queueing, so it is optimistic, not a proof; the
gap between the two rows is what knowing each point's length would be worth:

    python benchmarks/sim_fluid_bound.py --loads 0.5,0.8,0.9
"""

from __future__ import annotations

import argparse
import math
import random
import sys

from pice_bench.sim.engine import Workload
from pice_bench.sim.profiles import AGX_ORIN, HETEROGENEOUS, ORIN_NANO, ORIN_NX, DeviceClass
from pice_gateway.placement.rate import RateCurve

Request = list[tuple[float, int]]  # (named at, tokens) per point
# p95, p50, the shares or thresholds found, and the classes' per-sequence rates there.
Best = tuple[float, float, tuple[float, ...], list[float | None]]


def classes(edges: int) -> list[tuple[int, DeviceClass]]:
    devices = (ORIN_NANO, ORIN_NX, AGX_ORIN)
    return [(round(edges * HETEROGENEOUS[d.name]), d) for d in devices]


def requests(workload: Workload, n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    mu = math.log(workload.mean_tokens) - workload.sigma**2 / 2.0
    out = []
    for _ in range(n):
        k = rng.randint(*workload.points)
        out.append(
            [
                (
                    workload.sketch_first + i * workload.sketch_per_point,
                    max(1, min(workload.max_tokens, round(rng.lognormvariate(mu, workload.sigma)))),
                )
                for i in range(k)
            ]
        )
    return out


def rate_at(curve: RateCurve, slots: int, aggregate: float) -> float | None:
    """Per-sequence rate of the batch that decodes ``aggregate`` tok/s (None: beyond capacity)."""
    if aggregate <= 0.0:
        return curve.single
    if aggregate >= curve.aggregate(slots):
        return None
    # aggregate = r1·b / (1 + α(b − 1))  ⇒  b = aggregate·(1 − α) / (r1 − aggregate·α)
    batch = aggregate * (1 - curve.alpha) / (curve.single - aggregate * curve.alpha)
    return curve.per_sequence(1) if batch < 1 else aggregate / batch


def quantiles(latencies: list[float]) -> tuple[float, float]:
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(0.95 * len(latencies))]


def length_blind(
    fleet: list[tuple[int, DeviceClass]], work: list[Request], demand: float, seed: int
) -> Best:
    best: Best | None = None
    for a in range(0, 41, 2):
        for b in range(10, 61, 2):
            shares = (a / 100, b / 100, 1 - a / 100 - b / 100)
            if shares[2] <= 0:
                continue
            rates = [
                rate_at(d.curve(), d.max_sequences, demand * s / n)
                for (n, d), s in zip(fleet, shares, strict=True)
            ]
            if any(r is None for r in rates):
                continue
            rng = random.Random(seed)
            lat = [
                max(
                    at + tokens / (rates[rng.choices(range(3), shares)[0]] or 1.0)
                    for at, tokens in q
                )
                for q in work
            ]
            p50, p95 = quantiles(lat)
            if best is None or p95 < best[0]:
                best = (p95, p50, shares, rates)
    assert best is not None, "no shares carry this load"
    return best


def by_length(rates: list[float | None], t1: int, t2: int, tokens: int) -> float:
    """The per-sequence rate a point of ``tokens`` decodes at when classes go by length."""
    return rates[0 if tokens <= t1 else 1 if tokens <= t2 else 2] or 1.0


def lengths_known(fleet: list[tuple[int, DeviceClass]], work: list[Request], demand: float) -> Best:
    tokens = [t for q in work for _, t in q]
    total = sum(tokens)
    best: Best | None = None
    for t1 in range(5, 60, 2):
        for t2 in range(t1, 97, 2):
            share = [
                sum(t for t in tokens if t <= t1) / total,
                sum(t for t in tokens if t1 < t <= t2) / total,
                sum(t for t in tokens if t > t2) / total,
            ]
            rates = [
                rate_at(d.curve(), d.max_sequences, demand * s / n)
                for (n, d), s in zip(fleet, share, strict=True)
            ]
            if any(r is None for r in rates):
                continue

            p50, p95 = quantiles(
                [max(at + t / by_length(rates, t1, t2, t) for at, t in q) for q in work]
            )
            if best is None or p95 < best[0]:
                best = (p95, p50, (float(t1), float(t2)), rates)
    assert best is not None, "no thresholds carry this load"
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="0.5,0.8,0.9")
    parser.add_argument("--edges", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fleet = classes(args.edges)
    capacity = sum(n * d.curve().aggregate(d.max_sequences) for n, d in fleet)
    work = requests(Workload(), args.requests, args.seed)
    out = sys.stdout
    out.write(
        "| load | placement | p50 s | p95 s | tok/s per sequence Nano / NX / AGX | shares or "
        "thresholds |\n|---|---|---|---|---|---|\n"
    )
    for load in (float(x) for x in args.loads.split(",")):
        demand = load * capacity
        for label, best in (
            ("length-blind", length_blind(fleet, work, demand, args.seed)),
            ("lengths known", lengths_known(fleet, work, demand)),
        ):
            p95, p50, how, rates = best
            shown = " / ".join(f"{r or 0.0:.1f}" for r in rates)
            out.write(f"| {load:.2f} | {label} | {p50:.2f} | {p95:.2f} | {shown} | {how} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
