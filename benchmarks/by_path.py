"""Model ``pice`` against cloud-only, split by the path each question took.

Reads a bench run (``results.json`` of ``pice bench --modes pice-auto,cloud-only``) and its
judgment (``benchmarks/rejudge.py --pair pice-auto:cloud-only``; another pair with ``--pair``,
the baseline's answers from another run with ``--baseline-results``, as rejudge.py takes them)
and prints, per path of the candidate's answer — outlined by the edges, sent to the cloud by
the router, a framed sketch that turned to prose — the judge's W/L/T and net win rate with a
bootstrap 95% interval, how many texts were byte-identical, the median per-question latency
ratio with its interval, time to first token, and the questions lost and won; then the
router's agreement with the bench's labels, the answers cut by ``max_tokens``, and the
candidate's answers with a point cut at its share or shown trimmed (a loop, a cut ended on a
full sentence). Writes the same as JSON with ``--out``.

    python benchmarks/by_path.py R/pice_all/results.json R/pice_vs_cloud.json --out R/by_path.json
    python benchmarks/by_path.py R/bench/results.json R/edge15_vs_edge05.json \
        --pair pice-progressive:pice-progressive --baseline-results OTHER/results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pice_bench.stats import bootstrap_interval
from pice_bench.winrate import Outcome, WinRate

DEFAULT_PAIR = ("pice-auto", "cloud-only")
_PATHS = ("outline", "router", "sketch_prose")


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _latency_answers(results: dict[str, Any], mode: str) -> dict[str, dict[str, Any]]:
    return {
        r["question_id"]: r["answer"]
        for r in results["requests"]
        if r["phase"] == "latency" and r["mode"] == mode
    }


def summarise(
    results: dict[str, Any],
    judged: dict[str, Any],
    pair_modes: tuple[str, str] = DEFAULT_PAIR,
    baseline_results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``results`` holds the candidate's answers and, unless ``baseline_results`` is given,
    the baseline's; the keys ``candidate`` / ``baseline`` of the summary are the two sides."""
    candidate, baseline = pair_modes
    pair = judged["pairs"][f"{candidate}:{baseline}"]
    side = {
        "candidate": _latency_answers(results, candidate),
        "baseline": _latency_answers(baseline_results or results, baseline),
    }
    suits = {
        r["question_id"]: r["suits_points"] in (True, "True")
        for r in results["requests"]
        if r["phase"] == "latency"
    }

    def reason(question: str) -> str:
        extension = side["candidate"][question].get("extension") or {}
        return str(extension.get("reason", "?"))

    paths: dict[str, Any] = {}
    for path in _PATHS:
        records = [r for r in pair["records"] if reason(r["question_id"]) == path]
        if not records:
            continue
        outcomes = [Outcome(r["outcome"]) for r in records]
        rate = WinRate.of(outcomes)
        questions = [r["question_id"] for r in records]
        ratios = [
            side["candidate"][q]["latency_s"] / side["baseline"][q]["latency_s"] for q in questions
        ]
        paths[path] = {
            "n": len(records),
            "wins": rate.wins,
            "losses": rate.losses,
            "ties": rate.ties,
            "net": rate.net,
            "net_ci95": bootstrap_interval(outcomes, lambda s: WinRate.of(s).net),
            "identical": sum(bool(r["identical"]) for r in records),
            "suitable": sum(suits[q] for q in questions),
            "latency_ratio_median": _median(ratios),
            "latency_ratio_ci95": bootstrap_interval(ratios, _median),
            "ttft_p50_s": {
                name: _median([answers[q]["ttft_s"] for q in questions])
                for name, answers in side.items()
            },
            "lost": [r["question_id"] for r in records if r["outcome"] == "loss"],
            "won": [r["question_id"] for r in records if r["outcome"] == "win"],
        }
    questions = [r["question_id"] for r in pair["records"]]
    return {
        "pair": [candidate, baseline],
        "paths": paths,
        "router_agreement": [
            sum((reason(q) != "router") == suits[q] for q in questions),
            len(questions),
        ],
        "cut": {
            name: [q for q in questions if answers[q]["finish_reason"] == "length"]
            for name, answers in side.items()
        },
        "points": _point_faults(side["candidate"], questions),
        "failed_judge_calls": pair.get("failed_calls"),
    }


def _point_faults(answers: dict[str, Any], questions: list[str]) -> dict[str, Any]:
    """The candidate's answers with a point cut at its token share, and with a point the
    gateway shows shorter than written (``trimmed``: "loop" or "length"; absent in runs
    before it)."""
    points = {q: (answers[q].get("extension") or {}).get("points") or [] for q in questions}
    return {
        "cut_at_share": [
            q for q in questions if any(p["finish_reason"] == "length" for p in points[q])
        ],
        "trimmed": {
            why: [q for q in questions if any(p.get("trimmed") == why for p in points[q])]
            for why in ("loop", "length")
        },
    }


def render(summary: dict[str, Any]) -> str:
    candidate, baseline = summary["pair"]
    names = {"candidate": candidate, "baseline": baseline}
    lines = [
        "| path | n | W/L/T | net [95% CI] | identical | median latency ratio [95% CI] "
        f"| ttft p50 {candidate} / {baseline} s | lost | won |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, s in summary["paths"].items():
        low, high = s["net_ci95"]
        rlow, rhigh = s["latency_ratio_ci95"]
        ttft = s["ttft_p50_s"]
        lines.append(
            f"| {path} | {s['n']} | {s['wins']}/{s['losses']}/{s['ties']} "
            f"| {s['net']:+.2f} [{low:+.2f}, {high:+.2f}] | {s['identical']} "
            f"| {s['latency_ratio_median']:.2f} [{rlow:.2f}, {rhigh:.2f}] "
            f"| {ttft['candidate']:.2f} / {ttft['baseline']:.2f} "
            f"| {', '.join(s['lost']) or '-'} | {', '.join(s['won']) or '-'} |"
        )
    lines.append("")
    if candidate == DEFAULT_PAIR[0]:  # the one mode with a router
        agree, total = summary["router_agreement"]
        lines.append(f"router agreement with the bench's labels: {agree}/{total}")
    for name, cut in summary["cut"].items():
        lines.append(f"cut by max_tokens, {name} ({names[name]}): {len(cut)} {cut}")
    faults = summary["points"]
    cut = faults["cut_at_share"]
    lines.append(f"answers with a point cut at its share, {candidate}: {len(cut)} {cut}")
    for why, trimmed in faults["trimmed"].items():
        lines.append(f"answers with a point trimmed ({why}): {len(trimmed)} {trimmed}")
    lines.append(f"failed judge calls: {summary['failed_judge_calls']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the bench run's results.json")
    parser.add_argument("judged", type=Path, help="rejudge.py's output for the pair")
    parser.add_argument(
        "--pair", default=":".join(DEFAULT_PAIR), help="CANDIDATE:BASELINE modes, as judged"
    )
    parser.add_argument(
        "--baseline-results", type=Path, help="the baseline's answers from this other run"
    )
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    candidate, _, baseline = args.pair.partition(":")
    other = args.baseline_results
    summary = summarise(
        json.loads(args.results.read_text()),
        json.loads(args.judged.read_text()),
        (candidate, baseline),
        json.loads(other.read_text()) if other is not None else None,
    )
    print(render(summary))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
