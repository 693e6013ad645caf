"""Per run of this set: the latencies of the schedule's burst (slots 20-26, 7 arrivals between
282 s and 309 s) against the other 23 arrivals, and the edge tokens the burst asked for.

    python benchmarks/results/hetero/sketcher-zen4-30q/burst.py [RESULTS_DIR]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BURST = range(20, 27)
RUNS = ["least-loaded-1", "least-loaded-2", "least-loaded-3", "eft-1", "eft-2", "eft-3",
        "stock-least-loaded-1", "stock-eft-1"]  # fmt: skip


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    print("| run | burst: median s | burst: max s | burst: last answer at s | burst: edge tokens "
          "| the other 23: median s | the other 23: max s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for run in RUNS:
        data = json.loads((root / run / "results.json").read_text())
        load = sorted(
            (r for r in data["requests"] if r["phase"] == "load"), key=lambda r: r["scheduled_s"]
        )
        latency = [float(r["answer"]["latency_s"]) for r in load]
        burst = [latency[i] for i in BURST]
        rest = [v for i, v in enumerate(latency) if i not in BURST]
        last = max(load[i]["scheduled_s"] + latency[i] for i in BURST)
        tokens = sum(
            point.get("tokens") or 0
            for i in BURST
            for point in (load[i]["answer"].get("extension") or {}).get("points", [])
        )
        print(f"| {run} | {statistics.median(burst):.1f} | {max(burst):.1f} | {last:.0f} | "
              f"{tokens} | {statistics.median(rest):.1f} | {max(rest):.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
