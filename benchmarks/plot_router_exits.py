"""The router's early exits, drawn: decision time with and without them, and where they decide.

Left: p50 decision time per round, the whole encoder against the early exits, from
``benchmarks/router_latency.py`` outputs (each conversation through both, interleaved), one
group of rounds per file, with the issue's 5 ms bound. Right: per labelled set, the share of
questions decided after each exit block and by the final head, from a ``pice router eval
--out`` file. Prints the tables drawn.

    R=benchmarks/results/router-exits
    python benchmarks/plot_router_exits.py --eval $R/eval-v32.json \\
        --latency "dev + held-out, seed 0=$R/latency-untrained-seed0.json" \\
        --latency "training + dev=$R/latency-training.json" --out docs/img/router_exits.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pice_bench.figures import figure

BOUND_MS = 5.0


def labelled(spec: str) -> tuple[str, Path]:
    """``LABEL=PATH`` (or a bare path, labelled by its stem)."""
    label, sep, path = spec.rpartition("=")
    return (label if sep else Path(path).stem), Path(path)


def round_p50s(latency: dict[str, Any]) -> dict[str, list[float]]:
    """Per variant the p50 of each round (ms): ``quantised`` (the whole encoder), ``early-exit``."""
    variants = latency["variants"]
    if "early-exit" not in variants:
        raise ValueError("no early-exit variant: were the weights' exits timed?")
    return {
        name: [r["p50"] for r in variants[name]["rounds"]] for name in ("quantised", "early-exit")
    }


def exit_shares(evaluation: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per set (its short name), the share of questions each exit (and the final head) decided."""
    shares = {}
    for key, report in evaluation.items():
        if not isinstance(report, dict) or "exits" not in report:
            continue
        path = Path(key)
        name = path.parent.name if path.suffix == ".csv" else path.stem
        total = sum(report["exits"].values())
        shares[name] = {where: count / total for where, count in report["exits"].items()}
    return shares


def plot(
    latencies: list[tuple[str, dict[str, list[float]]]],
    shares: dict[str, dict[str, float]],
    out: Path,
) -> None:
    with figure(out, size=(11, 4.2), ncols=2) as (_, (left, right)):
        x = 0
        ticks, names = [], []
        for label, p50s in latencies:
            rounds = len(p50s["quantised"])
            for offset, variant, colour in ((-0.2, "quantised", "C0"), (0.2, "early-exit", "C1")):
                left.bar(
                    [x + i + offset for i in range(rounds)],
                    p50s[variant],
                    width=0.4,
                    color=colour,
                    label=(
                        ("whole encoder" if variant == "quantised" else "early exits")
                        if x == 0
                        else None
                    ),
                )
            ticks.append(x + (rounds - 1) / 2)
            names.append(label)
            x += rounds + 1
        left.axhline(BOUND_MS, color="C3", linestyle="--", linewidth=1, label="bound 5 ms")
        left.set_xticks(ticks, names, fontsize=8)
        left.set_ylabel("p50 decision time per round (ms, one core)")
        left.set_title("Decision time, interleaved", fontsize=10, loc="left")
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
        sets = list(shares)
        places = sorted({w for s in shares.values() for w in s}, key=_order)
        bottoms = [0.0] * len(sets)
        for index, where in enumerate(places):
            values = [shares[s].get(where, 0.0) for s in sets]
            right.barh(sets, values, left=bottoms, color=f"C{index + 2}", label=where)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        right.invert_yaxis()
        right.set_xlim(0, 1)
        right.set_xlabel("share of the set's questions decided there")
        right.set_title("Where the router decides", fontsize=10, loc="left")
        right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)


def _order(where: str) -> tuple[int, int]:
    # "block 2" < "block 4" < "final"
    return (1, 0) if where == "final" else (0, int(where.split()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", action="append", required=True, metavar="LABEL=JSON")
    parser.add_argument("--eval", type=Path, required=True, help="a pice router eval --out file")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)

    latencies = []
    print("| conversations | whole encoder p50 per round (ms) | early exits |")
    print("|---|---|---|")
    for spec in args.latency:
        label, path = labelled(spec)
        p50s = round_p50s(json.loads(path.read_text()))
        latencies.append((label, p50s))
        print(
            f"| {label} | "
            + " | ".join(
                " / ".join(f"{v:.2f}" for v in p50s[k]) for k in ("quantised", "early-exit")
            )
            + " |"
        )
    shares = exit_shares(json.loads(args.eval.read_text()))
    places = sorted({w for s in shares.values() for w in s}, key=_order)
    print("| set | " + " | ".join(places) + " |")
    for name, share in shares.items():
        print(f"| {name} | " + " | ".join(f"{share.get(w, 0.0):.1%}" for w in places) + " |")
    plot(latencies, shares, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
