"""Policies × loads: run the simulation for each, tabulate, write JSON and a plot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pice_bench.figures import figure
from pice_bench.sim.engine import RunResult, Simulation, Workload, rate_for_load
from pice_bench.sim.profiles import HETEROGENEOUS, HOMOGENEOUS, LAN, EdgeProfile, fleet
from pice_gateway.placement.hedging import HedgeRule
from pice_gateway.placement.rate import RateFrom
from pice_gateway.placement.registry import placement_policy

logger = logging.getLogger(__name__)

MIXES = {"heterogeneous": HETEROGENEOUS, "homogeneous": HOMOGENEOUS}


@dataclass(frozen=True)
class SimConfig:
    edges: int = 100
    mix: str = "heterogeneous"
    loads: tuple[float, ...] = (0.8,)
    policies: tuple[str, ...] = ("round-robin", "least-loaded", "eft")
    # Its ``rate`` is set per load (``rate_for_load``).
    workload: Workload = field(default_factory=Workload)
    seed: int = 0
    # Sequences per edge for every edge (None: each device class's own, see ``profiles``).
    slots: int | None = None
    # The hedging of policies named ``<policy>+hedge`` (the gateway's defaults).
    hedge_factor: float = 2.0
    hedge_floor: float = 2.0
    # The rate curve the gateway's estimates use (``progressive.placement_rate``).
    rate_from: RateFrom = "points"

    def fleet(self) -> list[EdgeProfile]:
        # A homogeneous fleet is one device class on one link, so only the policy differs.
        links = {LAN.name: 1.0} if self.mix == "homogeneous" else None
        return fleet(self.edges, MIXES[self.mix], seed=self.seed, links=links, slots=self.slots)


HEDGE_SUFFIX = "+hedge"


def base_policy(name: str) -> str:
    """The registered policy of ``name`` (``eft+hedge`` is ``eft`` with hedging)."""
    return name.removesuffix(HEDGE_SUFFIX)


def run_one(config: SimConfig, policy: str, load: float) -> RunResult:
    """One policy at one load; the policy is the gateway's, made by its registered name, with
    the gateway's hedging when the name ends in ``+hedge``."""
    edges = config.fleet()
    workload = replace(config.workload, rate=rate_for_load(load, edges, config.workload))

    def progress(t: float) -> None:
        if t <= workload.duration:
            logger.info(
                "%s at load %.2f: %.0f / %.0f s simulated", policy, load, t, workload.duration
            )
        else:
            logger.info("%s at load %.2f: %.0f s simulated, draining the queues", policy, load, t)

    hedging = (
        HedgeRule(enabled=True, factor=config.hedge_factor, floor_seconds=config.hedge_floor)
        if policy.endswith(HEDGE_SUFFIX)
        else None
    )
    simulation = Simulation(
        edges,
        workload,
        placement_policy(base_policy(policy)),
        seed=config.seed,
        progress=progress,
        hedging=hedging,
        rate_from=config.rate_from,
    )
    return simulation.run(policy, load)


def run_sweep(config: SimConfig) -> list[RunResult]:
    results = []
    for load in config.loads:
        for policy in config.policies:
            result = run_one(config, policy, load)
            logger.info(
                "%s at load %.2f: p50 %.2f s, p95 %.2f s (%d requests, %d events)",
                policy,
                load,
                result.p50,
                result.p95,
                len(result.latencies),
                result.events,
            )
            results.append(result)
    return results


def table(results: Sequence[RunResult]) -> str:
    """A markdown table: one row per load and policy, p95 also as a ratio to eft's."""
    eft_p95 = {r.load: r.p95 for r in results if r.policy == "eft"}
    lines = [
        "| load | policy | rate (req/s) | p50 s | p95 s | p95 / eft | hedges (won) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.p95 / eft_p95[r.load]:.2f}" if r.load in eft_p95 else "–"
        hedges = f"{r.hedges} ({r.hedges_won})" if r.hedges else "–"
        lines.append(
            f"| {r.load:.2f} | {r.policy} | {r.rate:.1f} | {r.p50:.2f} | {r.p95:.2f} | {ratio} "
            f"| {hedges} |"
        )
    return "\n".join(lines) + "\n"


def report(config: SimConfig, results: Sequence[RunResult]) -> dict[str, Any]:
    """The JSON record of a sweep: its configuration, the fleet and every run's summary."""
    edges = config.fleet()
    return {
        "config": {
            "edges": config.edges,
            "mix": config.mix,
            "loads": list(config.loads),
            "policies": list(config.policies),
            "seed": config.seed,
            "slots": config.slots,
            "placement_rate": config.rate_from,
            "workload": asdict(config.workload) | {"rate": None},
        },
        "fleet": [
            {
                "name": e.name,
                "device": e.device,
                "single_rate": round(e.curve.single, 2),
                "alpha": round(e.curve.alpha, 4),
                "max_sequences": e.max_sequences,
                "capacity": round(e.capacity(), 1),
                "link": e.link.name,
            }
            for e in edges
        ],
        "results": [r.summary() for r in results],
    }


def write_plot(results: Sequence[RunResult], path: Path, title: str) -> None:
    """p50 and p95 latency vs load, one colour per policy (matplotlib, the bench extra)."""
    with figure(path) as (_, ax):
        for policy in dict.fromkeys(r.policy for r in results):
            runs = sorted((r for r in results if r.policy == policy), key=lambda r: r.load)
            loads = [r.load for r in runs]
            ax.plot(loads, [r.p95 for r in runs], marker="o", label=f"{policy} p95")
            colour = ax.lines[-1].get_color()
            ax.plot(
                loads,
                [r.p50 for r in runs],
                marker=".",
                ls=":",
                color=colour,
                label=f"{policy} p50",
            )
        ax.set_xlabel("offered load (share of the fleet's saturated throughput)")
        ax.set_ylabel("request latency, s")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
