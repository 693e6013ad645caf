"""Would moving a late point to another edge (migration) cut eft's tail in ``pice sim``?

The gateway's hedges start a late point again from its prompt on an edge with a free slot, and
in the simulator such a duplicate never finishes first (docs/benchmarks.md, "Hedging in the
simulator"). A *continuation* would hand the other edge the text decoded so far: the new edge
decodes only the rest, and the point's length, which the 0.6× target needs and nothing the
gateway sees predicts ("Length-aware placement"), shows itself while it runs — a point still
going past its estimate is a long one. The edge protocol has no continuation today; this asks
the simulator whether one would be worth building (:class:`pice_bench.sim.engine.Migration`).

Variants, on the sweep's fleet (100 heterogeneous edges, slots per device class) and requests,
seed by seed: least-loaded; eft; eft with the gateway's hedges (default deadline); eft with
migration at several deadlines (``factor × estimate + floor``, the gateway's rule), the move
free (``--prefill-tokens 0``, optimistic) unless told otherwise. Prints a table of p95 (and
p50) per seed, the mean, and the mean p95 over least-loaded's; ``--out`` writes it as JSON.

    python benchmarks/sim_migration.py --load 0.8 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from pice_bench.sim.engine import Migration, RunResult, Simulation, Workload, rate_for_load
from pice_bench.sim.sweep import SimConfig
from pice_gateway.placement.hedging import HedgeRule
from pice_gateway.placement.registry import placement_policy


@dataclass(frozen=True)
class Variant:
    name: str
    policy: str
    hedging: HedgeRule | None = None
    migration: Migration | None = None


def variants(deadlines: list[tuple[float, float]], prefill_tokens: int) -> list[Variant]:
    moved = Migration(prefill_tokens=prefill_tokens)
    out = [
        Variant("least-loaded", "least-loaded"),
        Variant("eft", "eft"),
        Variant("eft + hedges (2× + 2 s)", "eft", HedgeRule(enabled=True)),
    ]
    for factor, floor in deadlines:
        rule = HedgeRule(enabled=True, factor=factor, floor_seconds=floor)
        out.append(Variant(f"eft + migration ({factor:g}× + {floor:g} s)", "eft", rule, moved))
    return out


def run(variant: Variant, config: SimConfig, load: float) -> RunResult:
    edges = config.fleet()
    workload = replace(config.workload, rate=rate_for_load(load, edges, config.workload))
    simulation = Simulation(
        edges,
        workload,
        placement_policy(variant.policy),
        seed=config.seed,
        hedging=variant.hedging,
        migration=variant.migration,
        rate_from="decode",  # as the committed results ran (before 2026-12-05)
    )
    return simulation.run(variant.name, load)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument(
        "--deadlines",
        default="1:0,1.5:0,2:0",
        help="migration deadlines as factor:floor_seconds, comma-separated",
    )
    parser.add_argument("--prefill-tokens", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    deadlines = [(float(f), float(s)) for f, s in (d.split(":") for d in args.deadlines.split(","))]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        config = SimConfig(workload=Workload(duration=args.duration, warmup=args.warmup), seed=seed)
        for variant in variants(deadlines, args.prefill_tokens):
            result = run(variant, config, args.load)
            rows.setdefault(variant.name, []).append(
                {
                    "seed": seed,
                    "p50_s": result.p50,
                    "p95_s": result.p95,
                    "requests": len(result.latencies),
                    "moved_or_hedged": result.hedges,
                    "won": result.hedges_won,
                }
            )
            print(f"seed {seed}: {variant.name} p95 {result.p95:.2f} s", file=sys.stderr)
    base = statistics.mean(r["p95_s"] for r in rows["least-loaded"])
    out = sys.stdout
    out.write(
        f"load {args.load}, {args.duration:g} s of arrivals, prefill per move "
        f"{args.prefill_tokens} tokens\n\n"
        "| variant | p95 s per seed | mean p95 | over least-loaded | mean p50 | moved or hedged "
        "(per seed) |\n|---|---|---|---|---|---|\n"
    )
    summary = {}
    for name, runs in rows.items():
        mean95 = statistics.mean(r["p95_s"] for r in runs)
        mean50 = statistics.mean(r["p50_s"] for r in runs)
        summary[name] = {"runs": runs, "mean_p95_s": mean95, "mean_p50_s": mean50}
        moved = ", ".join(str(int(r["moved_or_hedged"])) for r in runs)
        p95s = ", ".join(f"{r['p95_s']:.2f}" for r in runs)
        out.write(
            f"| {name} | {p95s} | {mean95:.2f} | {mean95 / base:.2f}× | {mean50:.2f} | {moved} |\n"
        )
    if args.out is not None:
        record = {"load": args.load, "seeds": seeds, "duration_s": args.duration}
        record |= {"prefill_tokens": args.prefill_tokens, "variants": summary}
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
