"""Judge two runs' expansions point by point, where the outline is the same and the body not.

Whole answers that differ in one or two of eight points mostly tie: the judge grades the
answer, and a better body for one point moves its grade by less than it can show. Here each
point whose body differs between run A and run B (same questions, same greedy sketches: e.g.
``pice-ensemble`` against ``pice-progressive``, or a tuned edge against the stock one) is
judged on its own — the question, the point's title, and the two bodies — with the same judge
and protocol as whole answers (:class:`pice_bench.judge.Judge`: both orders, expected grades,
a tie within :data:`pice_bench.winrate.EXPECTED_TIE_MARGIN`). Questions whose outlines differ
are left out (counted). The interval of the net win rate resamples questions, each with all
of its judged points.

    python benchmarks/judge_points.py R/single/results.json R/ensemble/results.json \\
        --mode-b pice-ensemble --judge-url http://127.0.0.1:8200/v1 --out R/points_judged.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from pice_bench.coverage import point_bodies
from pice_bench.judge import Judge, failed_calls
from pice_bench.questions import Question
from pice_bench.records import Mode
from pice_bench.stats import bootstrap_interval
from pice_bench.winrate import Outcome, WinRate, pooled_net

logger = logging.getLogger("judge_points")


@dataclass(frozen=True)
class PointPair:
    """One point of one question, with run A's and run B's body for it."""

    question_id: str
    category: str
    question: str
    index: int
    title: str
    body_a: str
    body_b: str
    # Run B's ensemble choice for the point (``pice.points[].winner``: 0 is the greedy
    # candidate), None without one: a body that differs though the greedy candidate won
    # differs by batch numerics alone, the judge's noise floor.
    winner_b: int | None = None

    def as_question(self) -> Question:
        """The point as the judge reads it: the user's question, then which point is graded."""
        text = (
            f"{self.question}\n\n(The answer is one point of an outline: "
            f'"{self.title}". Grade how well each answer explains this point.)'
        )
        return Question(f"{self.question_id}#{self.index + 1}", self.category, text, True)


def answers(path: Path, mode: str) -> dict[str, dict[str, Any]]:
    """The latency phase's answers of ``mode`` in a ``pice bench`` results.json, by question."""
    records = json.loads(path.read_text())["requests"]
    return {
        r["question_id"]: r
        for r in records
        if r["phase"] == "latency" and r["mode"] == mode and not r["answer"].get("error")
    }


def point_pairs(
    a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], questions: dict[str, str]
) -> tuple[list[PointPair], dict[str, int]]:
    """The points whose bodies differ, and what was counted on the way: questions in both
    runs, those left out for a different outline, points compared, bodies identical."""
    pairs: list[PointPair] = []
    counts = {"questions": 0, "outline_differs": 0, "points": 0, "identical": 0}
    for qid in sorted(set(a) & set(b)):
        counts["questions"] += 1
        titles = a[qid]["answer"].get("points") or []
        if titles != (b[qid]["answer"].get("points") or []):
            counts["outline_differs"] += 1
            continue
        bodies_a = point_bodies(titles, a[qid]["answer"]["text"])
        bodies_b = point_bodies(titles, b[qid]["answer"]["text"])
        for i, (title, body_a, body_b) in enumerate(zip(titles, bodies_a, bodies_b, strict=True)):
            counts["points"] += 1
            if (body_a or "").strip() == (body_b or "").strip():
                counts["identical"] += 1
                continue
            question = questions.get(qid, "")
            category = a[qid].get("category", "")
            reported = (b[qid]["answer"].get("extension") or {}).get("points") or []
            winner = reported[i].get("winner") if i < len(reported) else None
            pairs.append(
                PointPair(qid, category, question, i, title, body_a or "", body_b or "", winner)
            )
    return pairs, counts


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """W/L/T of run B's bodies, the net win rate and mean margin with intervals over questions."""
    if not records:
        return {"points": 0}
    clusters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        clusters[r["question_id"]].append(r)
    groups = list(clusters.values())
    outcomes = [[Outcome(r["outcome"]) for r in group] for group in groups]

    def margin(sample: Sequence[list[dict[str, Any]]]) -> float:
        return statistics.fmean(r["margin"] for group in sample for r in group)

    total = WinRate.of(o for group in outcomes for o in group)
    return {
        "points": len(records),
        "questions": len(groups),
        "wins": total.wins,
        "losses": total.losses,
        "ties": total.ties,
        "net": total.net,
        "net_ci95": list(bootstrap_interval(outcomes, pooled_net)),
        "mean_margin": margin(groups),
        "mean_margin_ci95": list(bootstrap_interval(groups, margin)),
    }


async def judge_all(args: argparse.Namespace, pairs: list[PointPair]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        judge = Judge(client, args.judge_url, args.judge_model, expected=True)
        for n, pair in enumerate(pairs, start=1):
            record = await judge.judge_pair(
                pair.as_question(), Mode(args.mode_b), pair.body_b, Mode(args.mode), pair.body_a
            )
            records.append(
                asdict(pair) | {"outcome": record.outcome, "margin": record.margin}
                | {"raw_b_first": record.raw_first, "raw_b_second": record.raw_second}
                | {"failed": failed_calls([record])}
            )  # fmt: skip
            logger.info(
                "%d/%d %s point %d: %s (margin %+.2f)",
                n, len(pairs), pair.question_id, pair.index + 1, record.outcome, record.margin,
            )  # fmt: skip
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="results.json of run A (the baseline)")
    parser.add_argument("b", type=Path, help="results.json of run B (the candidate)")
    parser.add_argument("--mode", default="pice-progressive", help="run A's mode")
    parser.add_argument("--mode-b", default=None, help="run B's mode, if not --mode's")
    parser.add_argument("--judge-url", required=True, help="OpenAI base URL (…/v1)")
    parser.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--questions", type=Path, default=Path("benchmarks/questions.jsonl"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.mode_b = args.mode_b or args.mode
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    questions = {
        q["id"]: q["question"]
        for q in map(json.loads, args.questions.read_text().splitlines())
        if q
    }
    pairs, counts = point_pairs(answers(args.a, args.mode), answers(args.b, args.mode_b), questions)
    logger.info("%s; %d points to judge", counts, len(pairs))
    started = time.time()
    records = asyncio.run(judge_all(args, pairs))
    result = {
        "command": " ".join(sys.argv),
        "a": str(args.a),
        "b": str(args.b),
        "modes": [args.mode, args.mode_b],
        "judge_url": args.judge_url,
        "judge_model": args.judge_model,
        "started_unix": started,
        "finished_unix": time.time(),
        "counts": counts,
        "failed_calls": sum(r["failed"] for r in records),
        "summary": summary(records),
        "by_winner": {
            "sampled candidate chosen": summary([r for r in records if r["winner_b"]]),
            "greedy candidate or no ensemble": summary([r for r in records if not r["winner_b"]]),
        },
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{counts}; failed judge calls: {result['failed_calls']}")
    print("| points | judged | B W/L/T | net [95% CI] | mean margin [95% CI] |")
    print("|---|---|---|---|---|")
    for label, row in (("all", result["summary"]), *result["by_winner"].items()):
        if row["points"]:
            print(
                f"| {label} | {row['points']} ({row['questions']} questions) | "
                f"{row['wins']}/{row['losses']}/{row['ties']} | {row['net']:+.2f} "
                f"[{row['net_ci95'][0]:+.2f}, {row['net_ci95'][1]:+.2f}] | "
                f"{row['mean_margin']:+.2f} "
                f"[{row['mean_margin_ci95'][0]:+.2f}, {row['mean_margin_ci95'][1]:+.2f}] |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
