"""Compare placement policies measured by separate ``pice bench`` runs on one arrival schedule.

Each run's load-phase requests are paired by their place in the (identical, seeded) schedule,
so a bootstrap resamples arrival slots and keeps every policy's latency for that slot:

    python benchmarks/hetero_compare.py benchmarks/results/hetero/{least-loaded,eft,round-robin}

The first run is the baseline. Prints p50/p95 per run and each ratio to the baseline with a
95% interval; refuses runs whose schedule fingerprints differ.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from pice_bench.stats import percentile

RESAMPLES = 2000


def load_latencies(run_dir: Path) -> tuple[str, list[float]]:
    data = json.loads((run_dir / "results.json").read_text())
    fingerprints = sorted(s["fingerprint"] for s in data["config"]["load_schedules"].values())
    load = sorted(
        (r for r in data["requests"] if r["phase"] == "load"), key=lambda r: r["scheduled_s"]
    )
    return ",".join(fingerprints), [float(r["answer"]["latency_s"]) for r in load]


def interval(values: list[float]) -> tuple[float, float]:
    return percentile(values, 2.5), percentile(values, 97.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="result directories, baseline first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = {path.name: load_latencies(path) for path in args.runs}
    if len({fp for fp, _ in runs.values()}) != 1:
        sys.stderr.write("the runs do not share one arrival schedule\n")
        return 1
    (base_name, (_, base)), *others = runs.items()
    out = sys.stdout
    out.write("| run | n | p50 s | p95 s | p50 / base [95% CI] | p95 / base [95% CI] |\n")
    out.write("|---|---|---|---|---|---|\n")
    out.write(f"| {base_name} | {len(base)} | {percentile(base, 50):.1f} | ")
    out.write(f"{percentile(base, 95):.1f} | – | – |\n")
    rng = random.Random(args.seed)
    for name, (_, lat) in others:
        n = min(len(lat), len(base))
        r50, r95 = [], []
        for _ in range(RESAMPLES):
            slots = [rng.randrange(n) for _ in range(n)]
            mine, theirs = [lat[i] for i in slots], [base[i] for i in slots]
            r50.append(percentile(mine, 50) / percentile(theirs, 50))
            r95.append(percentile(mine, 95) / percentile(theirs, 95))
        (lo50, hi50), (lo95, hi95) = interval(r50), interval(r95)
        out.write(
            f"| {name} | {len(lat)} | {percentile(lat, 50):.1f} | {percentile(lat, 95):.1f} | "
            f"{percentile(lat, 50) / percentile(base, 50):.2f} [{lo50:.2f}, {hi50:.2f}] | "
            f"{percentile(lat, 95) / percentile(base, 95):.2f} [{lo95:.2f}, {hi95:.2f}] |\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
