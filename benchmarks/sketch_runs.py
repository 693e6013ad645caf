"""Two `pice bench` runs that differ in who writes the sketch (e.g. the stock cloud and a
sketcher LoRA), compared on what the sketch decides: how often the answer was outlined or
fell back to the cloud's prose (``pice.reason``), whether a framed sketch got its opening and
closing, points per outline, the cloud's completion tokens, words per answer, and the
latencies (p50 of the answer, the first token, the sketch). Paired by question; differences
B − A (ratios B / A for times) with percentile-bootstrap 95% intervals over questions.

    python benchmarks/sketch_runs.py R/stock/results.json R/sketcher/results.json \
        --out benchmarks/results/sketcher-framed/sketch_runs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pice_bench.stats import bootstrap_interval

Row = dict[str, Any]


def answers(path: Path, mode: str) -> dict[str, Row]:
    """The one-at-a-time answers of ``mode`` in a run, by question."""
    data = json.loads(path.read_text())
    return {
        r["question_id"]: r["answer"]
        for r in data["requests"]
        if r["phase"] == "latency" and r["mode"] == mode and not r["answer"].get("error")
    }


def ext(a: Row) -> Row:
    return dict(a.get("extension") or {})


def outlined(a: Row) -> bool:
    return ext(a).get("reason") == "outline"


MEASURES: dict[str, Callable[[Row], float]] = {
    "outlined": lambda a: float(outlined(a)),
    "closing": lambda a: float(bool(ext(a).get("sketch", {}).get("closing"))),
    "points": lambda a: float(len(a.get("points") or [])),
    "cloud_completion_tokens": lambda a: float(a["tokens"]["cloud_completion"]),
    "words": lambda a: float(len(str(a["text"]).split())),
}
TIMES: dict[str, Callable[[Row], float]] = {
    "latency_s": lambda a: float(a["latency_s"]),
    "ttft_s": lambda a: float(a["ttft_s"]),
    "sketch_s": lambda a: float(ext(a).get("timings", {}).get("sketch_ms", 0.0)) / 1000,
}


def compare(a: dict[str, Row], b: dict[str, Row]) -> dict[str, Any]:
    ids = sorted(a.keys() & b.keys())
    pairs = [(a[i], b[i]) for i in ids]
    out: dict[str, Any] = {"questions": len(ids), "measures": {}, "times": {}}
    for name, f in MEASURES.items():
        diffs = [f(y) - f(x) for x, y in pairs]
        low, high = bootstrap_interval(diffs, statistics.fmean)
        out["measures"][name] = {
            "a": round(statistics.fmean(f(x) for x, _ in pairs), 3),
            "b": round(statistics.fmean(f(y) for _, y in pairs), 3),
            "diff": round(statistics.fmean(diffs), 3),
            "ci95": [round(low, 3), round(high, 3)],
        }
    for name, f in TIMES.items():

        def ratio(items: Sequence[tuple[Row, Row]], f: Callable[[Row], float] = f) -> float:
            return statistics.median(f(y) for _, y in items) / statistics.median(
                f(x) for x, _ in items
            )

        low, high = bootstrap_interval(pairs, ratio)
        out["times"][name] = {
            "a_p50": round(statistics.median(f(x) for x, _ in pairs), 2),
            "b_p50": round(statistics.median(f(y) for _, y in pairs), 2),
            "ratio": round(ratio(pairs), 3),
            "ci95": [round(low, 3), round(high, 3)],
        }
    both = [(x, y) for x, y in pairs if outlined(x) and outlined(y)]
    out["both_outlined"] = len(both)
    out["points_when_both_outlined"] = {
        "a": round(statistics.fmean(len(x["points"]) for x, _ in both), 2) if both else None,
        "b": round(statistics.fmean(len(y["points"]) for _, y in both), 2) if both else None,
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="results.json of run A (the baseline)")
    ap.add_argument("b", type=Path, help="results.json of run B")
    ap.add_argument("--mode", default="pice-progressive")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = compare(answers(args.a, args.mode), answers(args.b, args.mode))
    result.update({"a": str(args.a), "b": str(args.b), "mode": args.mode})
    print(f"{result['questions']} questions, {args.mode}; B − A [95% CI]")
    print("| measure | A | B | B − A [95% CI] |\n|---|---|---|---|")
    for name, m in result["measures"].items():
        print(
            f"| {name} | {m['a']} | {m['b']} | {m['diff']:+} [{m['ci95'][0]:+}, {m['ci95'][1]:+}] |"
        )
    for name, t in result["times"].items():
        print(
            f"| {name} p50 | {t['a_p50']} | {t['b_p50']} | "
            f"×{t['ratio']} [{t['ci95'][0]}, {t['ci95'][1]}] |"
        )
    p = result["points_when_both_outlined"]
    print(f"\nboth outlined: {result['both_outlined']}; points then A {p['a']}, B {p['b']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
