"""Combine ``pice sim`` runs of several seeds: the spread across seeds, per load and policy.

One ``pice sim --seed N --out FILE`` per seed (each seed draws its own fleet, links and
requests); this reads them, optionally labelled (``LABEL:FILE`` appends `` [LABEL]`` to every
policy of that file, e.g. to set a run of an older revision beside the current one), and
prints a markdown table of p50 and p95 as the mean over seeds with [min, max], then the ratios
the scheduling target is stated in, per seed:

    python benchmarks/sim_seeds.py --out benchmarks/results/sim_sched/summary.json \\
        --png docs/img/sim_sched_seeds.png benchmarks/results/sim_sched/after-seed*.json \\
        before:benchmarks/results/sim_sched/before-seed0.json ...

A ratio is computed within each seed (same fleet, same requests) and then summarised, so the
spread shows how much of a difference is the policy and how much the draw.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pice_bench.figures import figure

# (eft's p95) / (baseline's p95): the target's two ratios at 80% load.
RATIOS = (("eft", "least-loaded", 0.6), ("eft", "round-robin", 0.5))


def read(spec: str) -> tuple[int, list[dict[str, Any]]]:
    """A run's seed and its result rows, policies suffixed by the label if one is given."""
    label, _, name = spec.rpartition(":") if ":" in spec else ("", "", spec)
    data = json.loads(Path(name).read_text())
    rows = data["results"]
    if label:
        rows = [row | {"policy": f"{row['policy']} [{label}]"} for row in rows]
    return int(data["config"]["seed"]), rows


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="pice sim JSON files, optionally LABEL:FILE")
    parser.add_argument("--out", type=Path, help="write the combined JSON here")
    parser.add_argument(
        "--png", type=Path, help="write each policy's p95 over least-loaded's vs load here"
    )
    args = parser.parse_args()

    # (load, policy) -> seed -> row
    cells: dict[tuple[float, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for spec in args.runs:
        seed, rows = read(spec)
        for row in rows:
            cells[(float(row["load"]), row["policy"])][seed] = row
    seeds = sorted({seed for by_seed in cells.values() for seed in by_seed})

    out = sys.stdout
    out.write(f"seeds {seeds}; mean over seeds [min, max]\n\n")
    out.write("| load | policy | p50 s | p95 s | cloud points |\n|---|---|---|---|---|\n")
    summary: list[dict[str, Any]] = []
    for (load, policy), by_seed in sorted(cells.items()):
        p50 = [row["p50_s"] for row in by_seed.values()]
        p95 = [row["p95_s"] for row in by_seed.values()]
        cloud = sum(row["cloud_points"] for row in by_seed.values())
        out.write(f"| {load:.2f} | {policy} | {spread(p50)} | {spread(p95)} | {cloud} |\n")
        summary.append(
            {"load": load, "policy": policy, "seeds": sorted(by_seed), "p50_s": p50, "p95_s": p95}
        )

    out.write("\np95 ratios, per seed (same fleet and requests), mean [min, max]:\n\n")
    out.write("| load | ratio | per seed | mean [min, max] | target |\n|---|---|---|---|---|\n")
    ratios: list[dict[str, Any]] = []
    policies = sorted({policy for _, policy in cells})
    loads = sorted({load for load, _ in cells})
    for load in loads:
        for policy in policies:
            for subject, baseline, target in RATIOS:
                if policy.split(" [")[0] != subject:
                    continue
                base = cells.get((load, baseline), {})
                mine = cells[(load, policy)]
                common = [s for s in seeds if s in base and s in mine]
                if not common:
                    continue
                values = [mine[s]["p95_s"] / base[s]["p95_s"] for s in common]
                shown = ", ".join(f"{v:.2f}" for v in values)
                out.write(
                    f"| {load:.2f} | {policy} / {baseline} | {shown} | {spread(values)} "
                    f"| ≤ {target} |\n"
                )
                ratios.append(
                    {
                        "load": load,
                        "ratio": f"{policy} / {baseline}",
                        "seeds": common,
                        "values": values,
                    }
                )

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"runs": args.runs, "seeds": seeds, "cells": summary, "ratios": ratios}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.png is not None:
        plot(summary, args.png, len(seeds))
    return 0


def plot(summary: list[dict[str, Any]], path: Path, seeds: int) -> None:
    """Each policy's p95 over least-loaded's on the same seed, vs load (round-robin, 20-50×
    slower, would flatten the rest), with the target's 0.6 as a line."""
    base = {
        (c["load"], s): p95
        for c in summary
        if c["policy"] == "least-loaded"
        for s, p95 in zip(c["seeds"], c["p95_s"], strict=True)
    }
    with figure(path, size=(7, 4.5)) as (_, ax):
        for policy in dict.fromkeys(cell["policy"] for cell in summary):
            if policy in ("least-loaded", "round-robin"):
                continue
            cells = sorted((c for c in summary if c["policy"] == policy), key=lambda c: c["load"])
            loads, means, low, high = [], [], [], []
            for c in cells:
                ratios = [
                    p95 / base[(c["load"], s)]
                    for s, p95 in zip(c["seeds"], c["p95_s"], strict=True)
                    if (c["load"], s) in base
                ]
                if ratios:
                    mean = statistics.mean(ratios)
                    loads.append(c["load"])
                    means.append(mean)
                    low.append(mean - min(ratios))
                    high.append(max(ratios) - mean)
            ax.errorbar(loads, means, yerr=[low, high], marker="o", capsize=3, label=policy)
        ax.axhline(0.6, color="grey", ls="--", label="target at 0.8 (eft ≤ 0.6×)")
        ax.set_xlabel("offered load (share of the fleet's saturated throughput)")
        ax.set_ylabel("p95 / least-loaded's p95, same seed (mean, min-max)")
        ax.set_title(f"100 heterogeneous edges, slots per device class, {seeds} seeds (simulated)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)


if __name__ == "__main__":
    raise SystemExit(main())
