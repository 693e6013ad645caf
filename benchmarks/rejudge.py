"""Judge a finished run's answers again, with expected grades (and integer ones side by side).

``pice bench`` keeps every answer in ``results.json``, so a new judging protocol can be applied
to a run without asking the models again. For each pair of modes (``--pair CANDIDATE:BASELINE``,
default: the pairs the run judged) and each question both answered, the judge grades the two
answers in both orders, asked for token probabilities; the table shows the net win rate read
from the expected grades (``pice_bench.expected_grades``, ties within
``winrate.EXPECTED_TIE_MARGIN``) and from the digits it wrote, each with a bootstrap 95%
interval over questions. Pairs of identical answers are ties without asking. A judge that is
loading or busy is asked again (``Judge``'s retries); calls that still fail are counted per pair
(``failed_calls``), printed, and make the exit status 1: they are ties, not verdicts.
``--baseline-results OTHER.json`` takes the baseline's answers from another run: the same mode
of two runs that differ in one part (a tuned edge against the stock one, same cloud, same
questions, hence the same greedy sketches).

    pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8200 --threads 2 &
    python benchmarks/rejudge.py benchmarks/results/quality-v2/results.json \\
        --judge-url http://127.0.0.1:8200/v1 --calibrate --out benchmarks/results/rejudge/q2.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx

from pice_bench.calibration import calibrate, judgment_diagnostics
from pice_bench.judge import Judge, failed_calls
from pice_bench.questions import Question, load_questions
from pice_bench.records import JudgeRecord, Mode
from pice_bench.stats import bootstrap_interval
from pice_bench.winrate import Judgment, Outcome, Verdict, WinRate, combine

logger = logging.getLogger("rejudge")
DEFAULT_QUESTIONS = Path("benchmarks/questions.jsonl")


def answers_of(
    results: dict[str, Any], phase: str = "latency"
) -> dict[tuple[str, str], dict[str, Any]]:
    """(question id, mode) → the request record of ``phase`` (answered ones only): the
    one-at-a-time pass, or ``load`` for a ``--load-only`` run whose arrivals are distinct
    questions (a question asked twice keeps its last answer)."""
    out = {}
    for r in results["requests"]:
        if r["phase"] == phase and not r["answer"].get("error"):
            out[(r["question_id"], r["mode"])] = r
    return out


def integer_outcome(record: JudgeRecord) -> Outcome:
    """The outcome the digits alone give (the protocol before expected grades)."""
    if record.identical:
        return Outcome.TIE
    first = Judgment(Verdict(record.verdict_candidate_first), record.scores_candidate_first)
    second = Judgment(Verdict(record.verdict_candidate_second), record.scores_candidate_second)
    return combine(first, second)


def group_table(records: list[JudgeRecord], seed: int) -> dict[str, Any]:
    groups = {
        "suitable": [r for r in records if r.suits_points],
        "not suitable": [r for r in records if not r.suits_points],
        "all": records,
    }
    out: dict[str, Any] = {}
    for name, group in groups.items():
        if not group:
            continue
        row: dict[str, Any] = {"n": len(group)}
        for label, outcomes in (
            ("expected", [Outcome(r.outcome) for r in group]),
            ("integer", [integer_outcome(r) for r in group]),
        ):
            rate = WinRate.of(outcomes)
            low, high = bootstrap_interval(outcomes, lambda s: WinRate.of(s).net, seed=seed)
            row[label] = {
                "wins": rate.wins,
                "losses": rate.losses,
                "ties": rate.ties,
                "net": rate.net,
                "ci95": [low, high],
            }
        row["mean_margin_expected"] = sum(r.margin for r in group) / len(group)
        out[name] = row
    return out


async def run(
    args: argparse.Namespace, results: dict[str, Any], questions: dict[str, Question]
) -> dict[str, Any]:
    answers = answers_of(results, args.phase)
    # Baseline answers from another run (--baseline-results): the same mode name in two runs,
    # e.g. pice-progressive with a tuned edge against the same mode with the stock one.
    baselines = (
        answers_of(json.loads(args.baseline_results.read_text()), args.phase)
        if args.baseline_results
        else answers
    )
    pairs = [tuple(p.split(":")) for p in args.pair] or sorted(
        {(j["candidate"], j["baseline"]) for j in results.get("judgments", [])}
    )
    out: dict[str, Any] = {
        "source": str(args.results),
        "phase": args.phase,
        "baseline_source": str(args.baseline_results or args.results),
        "judge_url": args.judge_url,
        "judge_model": args.judge_model,
        "started_unix": time.time(),
        "pairs": {},
    }
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        judge = Judge(client, args.judge_url, args.judge_model, expected=True)
        if args.calibrate:
            logger.info("calibrating on the hand-made pairs (52 judge calls)")
            cal = await calibrate(judge.grade, concurrency=args.concurrency)
            out["calibration"] = {
                "accuracy": cal.accuracy,
                "single_order_accuracy": cal.single_order_accuracy,
                "length_bias": cal.length_bias,
                "original_wins_over_padded": cal.original_wins,
                "padded_pairs": cal.padded_pairs,
                "position_bonus": cal.orders.position_bonus,
                "order_agreement": cal.orders.order_agreement,
                "pairs": cal.pairs,
            }
            logger.info(
                "calibration: %s", {k: v for k, v in out["calibration"].items() if k != "pairs"}
            )
        gate = asyncio.Semaphore(args.concurrency)
        for candidate, baseline in pairs:
            ids = sorted(
                qid
                for (qid, mode) in answers
                if mode == candidate and (qid, baseline) in baselines and qid in questions
            )[: args.limit]
            done = 0

            async def one(
                qid: str, cand: str = candidate, base: str = baseline, total: int = len(ids)
            ) -> JudgeRecord:
                nonlocal done
                c, b = answers[(qid, cand)], baselines[(qid, base)]
                async with gate:
                    record = await judge.judge_pair(
                        questions[qid],
                        Mode(cand),
                        c["answer"]["text"],
                        Mode(base),
                        b["answer"]["text"],
                    )
                done += 1
                logger.info(
                    "[%s vs %s] %d/%d %s: %s (margin %+.2f)",
                    cand,
                    base,
                    done,
                    total,
                    qid,
                    record.outcome,
                    record.margin,
                )
                return replace(
                    record,
                    candidate_cut=c["answer"].get("finish_reason") == "length",
                    baseline_cut=b["answer"].get("finish_reason") == "length",
                )

            records = list(await asyncio.gather(*(one(q) for q in ids)))
            diag = judgment_diagnostics(records)
            out["pairs"][f"{candidate}:{baseline}"] = {
                "groups": group_table(records, args.seed),
                "failed_calls": failed_calls(records),
                "position_bonus": diag.position_bonus,
                "order_agreement": diag.order_agreement,
                "records": [asdict(r) for r in records],
            }
    out["finished_unix"] = time.time()
    return out


def print_table(out: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"\nJudge {out['judge_model']} at {out['judge_url']}; source {out['source']}\n")
    if cal := out.get("calibration"):
        w(
            f"calibration: known better wins {cal['accuracy']:.0%} (one order alone "
            f"{cal['single_order_accuracy']:.0%}), padded wins {cal['length_bias']:.0%}, "
            f"position bonus {cal['position_bonus']:+.2f}, "
            f"orders agree {cal['order_agreement']:.0%}\n"
        )
    w("| pair | group | n | expected W/L/T | net [95% CI] | integer W/L/T | net [95% CI] |\n")
    w("|---|---|---|---|---|---|---|\n")
    for pair, data in out["pairs"].items():
        for group, row in data["groups"].items():
            cells = []
            for label in ("expected", "integer"):
                r = row[label]
                cells.append(f"{r['wins']}/{r['losses']}/{r['ties']}")
                cells.append(f"{r['net']:+.2f} [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]")
            w(f"| {pair} | {group} | {row['n']} | " + " | ".join(cells) + " |\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a pice bench results.json")
    parser.add_argument("--judge-url", required=True, help="OpenAI base URL (…/v1)")
    parser.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--pair", action="append", default=[], help="CANDIDATE:BASELINE modes")
    parser.add_argument(
        "--baseline-results",
        type=Path,
        default=None,
        help="take BASELINE's answers from this other results.json (e.g. the stock edge's run)",
    )
    parser.add_argument(
        "--phase",
        choices=["latency", "load"],
        default="latency",
        help="whose answers: the one-at-a-time pass (default) or the load steps",
    )
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--calibrate", action="store_true", help="also the 26 hand-made pairs")
    parser.add_argument("--concurrency", type=int, default=2, help="pairs judged at once (2)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = json.loads(args.results.read_text())
    questions = {q.id: q for q in load_questions(args.questions)}
    out = asyncio.run(run(args, results, questions))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print_table(out)
    failed = {pair: data["failed_calls"] for pair, data in out["pairs"].items()}
    if any(failed.values()):
        sys.stdout.write(f"judge calls failed (counted as ties; judge again): {failed}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
