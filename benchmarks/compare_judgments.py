"""Two judgments of one pair of modes, question by question: how far did the verdicts move?

``benchmarks/rejudge.py`` writes, per question, the expected-grade margin of a candidate over
a baseline (positive: the candidate is preferred) and the outcome. Two such files that differ
in one thing (the baseline's answers cut to their list, ``benchmarks/strip_framing.py``; or
the candidate's answers written with and without a frame) are compared here on the questions
both judged: the mean change of the margin with a bootstrap 95% interval over questions, how
many margins moved up or down, the net win rate of each, and the table of outcomes.

    python benchmarks/compare_judgments.py BEFORE.json AFTER.json --pair pice-progressive:cloud-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pice_bench.stats import bootstrap_interval

_NET = {"win": 1, "loss": -1}


def records(path: Path, pair: str) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {r["question_id"]: r for r in data["pairs"][pair]["records"]}


def net(outcomes: list[str]) -> float:
    return sum(_NET.get(o, 0) for o in outcomes) / len(outcomes) if outcomes else float("nan")


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    common = sorted(set(before) & set(after))
    shifts = [after[q]["margin"] - before[q]["margin"] for q in common]
    pairs = [(before[q]["outcome"], after[q]["outcome"]) for q in common]
    low, high = bootstrap_interval(shifts, statistics.fmean)
    net_low, net_high = bootstrap_interval(
        pairs, lambda sample: net([a for _, a in sample]) - net([b for b, _ in sample])
    )
    return {
        "n": len(common),
        "margin_shift_mean": statistics.fmean(shifts) if shifts else float("nan"),
        "margin_shift_ci95": [low, high],
        "margins_up": sum(s > 0 for s in shifts),
        "margins_down": sum(s < 0 for s in shifts),
        "net_before": net([b for b, _ in pairs]),
        "net_after": net([a for _, a in pairs]),
        "net_change_ci95": [net_low, net_high],
        "outcomes": {f"{b}->{a}": n for (b, a), n in sorted(Counter(pairs).items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--pair", default="pice-progressive:cloud-only")
    parser.add_argument("--after-pair", help="the pair's name in AFTER, if it differs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = compare(
        records(args.before, args.pair), records(args.after, args.after_pair or args.pair)
    )
    low, high = result["margin_shift_ci95"]
    net_low, net_high = result["net_change_ci95"]
    print(f"{args.before} -> {args.after} ({result['n']} questions)")
    print(
        f"margin shift {result['margin_shift_mean']:+.2f} [{low:+.2f}, {high:+.2f}]; "
        f"up {result['margins_up']}, down {result['margins_down']}"
    )
    print(
        f"net {result['net_before']:+.2f} -> {result['net_after']:+.2f} "
        f"(change [{net_low:+.2f}, {net_high:+.2f}])"
    )
    for key, n in result["outcomes"].items():
        print(f"  {key}: {n}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
