"""Where the simulator's tail latency comes from: a per-point breakdown of one ``pice sim`` run.

Runs one policy at one load (the sweep's fleet, workload and seed) with every simulated edge
traced, then for the requests at or above the p95 latency and for those below the median
prints what their *last* point (the one that decided the request's latency) was: its device,
its length, when the sketch named it, how long it queued on the edge before a slot, how long it
decoded, and the batch it joined. Per device class: points, queueing, decode time, per-sequence
rate and batch at arrival. A diagnostic, not a benchmark (it reads the simulation's edges):

    python benchmarks/sim_breakdown.py eft --load 0.8 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import ClassVar

from pice_bench.sim.edge import SimEdge, SimSequence
from pice_bench.sim.engine import Simulation, Workload, rate_for_load, workload_requests
from pice_bench.sim.sweep import SimConfig
from pice_gateway.placement.registry import placement_policy


@dataclass
class Trace:
    device: str
    tokens: int
    arrived: float  # at the edge
    running: int  # sequences running when it arrived
    admitted: float | None = None
    finished: float | None = None


class TracedEdge(SimEdge):
    """A simulated edge that records each sequence's arrival, admission and finish."""

    traces: ClassVar[dict[tuple[int, int], Trace]] = {}

    def arrive(self, sequence: SimSequence) -> None:
        key = (sequence.request, sequence.point)
        self.traces[key] = Trace(self.profile.device, sequence.tokens, self._clock, self.running)
        queued = list(self.queue)
        super().arrive(sequence)
        self._mark_admitted([*queued, sequence])

    def _mark_admitted(self, before: list[SimSequence]) -> None:
        for sequence in before:
            trace = self.traces[(sequence.request, sequence.point)]
            if sequence not in self.queue and trace.admitted is None:
                trace.admitted = self._clock

    def finish_due(self) -> list[SimSequence]:
        queued = list(self.queue)
        done = super().finish_due()
        for sequence in done:
            self.traces[(sequence.request, sequence.point)].finished = self._clock
        self._mark_admitted(queued)
        return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", help="a registered placement policy")
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    args = parser.parse_args()

    config = SimConfig(
        workload=Workload(duration=args.duration, warmup=args.warmup), seed=args.seed
    )
    edges = config.fleet()
    workload = replace(config.workload, rate=rate_for_load(args.load, edges, config.workload))
    # The rate fit the committed breakdown ran with (before 2026-12-05: the decode rate).
    simulation = Simulation(
        edges, workload, placement_policy(args.policy), seed=args.seed, rate_from="decode"
    )
    TracedEdge.traces = {}
    # The breakdown needs the edges' own clocks: swap in traced edges before the run starts.
    simulation._edges = [TracedEdge(profile) for profile in edges]
    result = simulation.run(args.policy, args.load)
    out = sys.stdout
    out.write(f"{args.policy} at load {args.load}, seed {args.seed}: ")
    out.write(f"p50 {result.p50:.2f} s, p95 {result.p95:.2f} s\n\n")

    traces = TracedEdge.traces
    rows = []  # (latency, request, its last point's index, that point's trace)
    for r, request in enumerate(workload_requests(workload, args.seed)):
        points = [traces.get((r, p)) for p in range(len(request.lengths))]
        if not request.measured or any(t is None or t.finished is None for t in points):
            continue
        done = [t for t in points if t is not None]
        last = max(range(len(done)), key=lambda p: done[p].finished or 0.0)
        rows.append(((done[last].finished or 0.0) - request.arrival, len(done), last, done[last]))
    rows.sort(key=lambda row: row[0])
    p95 = rows[int(0.95 * len(rows))][0]
    median = rows[len(rows) // 2][0]
    out.write(
        "| requests | n | last point's device | points k | its index | its tokens "
        "| named at s | queued s | decoded s | batch joined |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    for label, group in (
        ("≥ p95", [row for row in rows if row[0] >= p95]),
        ("< p50", [row for row in rows if row[0] < median]),
    ):
        devices = Counter(row[3].device for row in group)
        shares = ", ".join(f"{d} {n / len(group):.0%}" for d, n in devices.most_common())
        mean = statistics.mean
        out.write(
            f"| {label} | {len(group)} | {shares} | {mean(row[1] for row in group):.1f} "
            f"| {mean(row[2] for row in group):.1f} | {mean(row[3].tokens for row in group):.0f} "
            f"| {mean(0.4 + 0.25 * row[2] for row in group):.2f} "
            f"| {mean((row[3].admitted or 0) - row[3].arrived for row in group):.2f} "
            f"| {mean((row[3].finished or 0) - (row[3].admitted or 0) for row in group):.2f} "
            f"| {mean(row[3].running for row in group) + 1:.1f} |\n"
        )
    by_device: dict[str, list[Trace]] = defaultdict(list)
    for trace in traces.values():
        if trace.admitted is not None and trace.finished is not None:
            by_device[trace.device].append(trace)
    out.write(
        "\n| device | points | queued (share) | mean queue s | mean decode s "
        "| tok/s per sequence | batch joined |\n|---|---|---|---|---|---|---|\n"
    )
    for device, on_it in sorted(by_device.items()):
        queued = [(t.admitted or 0) - t.arrived for t in on_it]
        decode = [(t.finished or 0) - (t.admitted or 0) for t in on_it]
        rate = sum(t.tokens for t in on_it) / sum(decode)
        out.write(
            f"| {device} | {len(on_it)} | {sum(q > 1e-9 for q in queued) / len(on_it):.1%} "
            f"| {statistics.mean(queued):.2f} | {statistics.mean(decode):.2f} | {rate:.1f} "
            f"| {statistics.mean(t.running for t in on_it) + 1:.1f} |\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
