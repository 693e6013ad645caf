"""The judge's verdicts on a preference data step's candidates: the second source of pairs.

``pice tune data --role preference`` keeps every point's k candidates in its raw cache
(``<out>.raw.jsonl``) and decides pairs by the data filters, then the ensemble's score. Here
the judge is asked instead, where the filters leave the choice open (every candidate passes
them): for each such point, the two candidates :func:`pice_tune.preference.judge_targets`
names — the score's best and its worst of like length, whatever their score gap — are judged
as ``judge_points.py`` judges two runs' bodies (the question, the point's title, the two
bodies; :class:`pice_bench.judge.Judge`: both orders, expected grades). Each verdict is
appended to ``--out`` as soon as it is known, so a rerun judges only what is missing; then

    pice tune data --role preference --out SAME_OUT --verdicts VERDICTS

builds pairs oriented by the judge (ties give none). The table printed (and the summary JSON)
reads the judge against the score: how often it prefers the candidate the score ranks first,
by score gap (≥ MIN_GAP: the pairs the score alone would make), with intervals that resample
questions, and the words of the candidates it prefers and rejects (its length bias).

    python benchmarks/judge_candidates.py W/pairs-v2.jsonl --length-ratio 0.75 \\
        --judge-url http://127.0.0.1:8200/v1 --out W/verdicts.jsonl
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_points import PointPair

from pice_bench.judge import Judge, failed_calls
from pice_bench.records import Mode
from pice_bench.stats import bootstrap_interval
from pice_tune.dataset import TuneQuestion, bundled_questions_path, load_questions
from pice_tune.distill import load_raw_cache, raw_cache_path
from pice_tune.preference import MIN_GAP, JudgeTarget, PairRule, judge_targets, load_verdicts

logger = logging.getLogger("judge_candidates")


@dataclass(frozen=True)
class Target:
    """One point to judge: the pair :func:`judge_targets` names (``a``, the score's best,
    against ``b``) and their texts."""

    question: TuneQuestion
    index: int
    title: str
    pair: JudgeTarget
    text_a: str
    text_b: str

    @property
    def key(self) -> tuple[str, int]:
        return self.question.id, self.index


def targets(
    questions: dict[str, TuneQuestion], cache: dict[str, dict[str, Any]], rule: PairRule
) -> list[Target]:
    """Every point of the cached questions where the judge, not the filters, decides."""
    found = []
    for qid, raw in sorted(cache.items()):
        question = questions.get(qid)
        if question is None:
            continue
        titles = list(raw["titles"])
        for index, candidates in enumerate(raw["candidates"]):
            pair = judge_targets(question, titles, index, candidates, rule)
            if pair is None:
                continue
            text_a, text_b = (str(candidates[i]["text"]).strip() for i in (pair.a, pair.b))
            found.append(Target(question, index, titles[index], pair, text_a, text_b))
    return found


def judged_keys(path: Path) -> set[tuple[str, int]]:
    """Points already judged in ``path`` (a verdict whose calls failed is judged again)."""
    return set(load_verdicts(path))


async def judge_all(judge: Judge, todo: Sequence[Target], out_path: Path, concurrency: int) -> None:
    """Judge every target, ``concurrency`` points at a time (each asks both orders at once),
    appending each verdict to ``out_path`` as soon as it is known."""
    gate = asyncio.Semaphore(concurrency)
    done = 0
    started = time.monotonic()
    with out_path.open("a") as out:

        async def one(t: Target) -> None:
            nonlocal done
            point = PointPair(
                t.question.id, "", t.question.question, t.index, t.title, t.text_b, t.text_a
            )
            async with gate:
                record = await judge.judge_pair(
                    point.as_question(), Mode.PICE, t.text_a, Mode.PICE, t.text_b
                )
            row = {
                "question_id": t.question.id,
                "index": t.index,
                "a": t.pair.a,
                "b": t.pair.b,
                "score_a": t.pair.score_a,
                "score_b": t.pair.score_b,
                "outcome": record.outcome,
                "margin": record.margin,
                "failed": failed_calls([record]),
                "words_a": len(t.text_a.split()),
                "words_b": len(t.text_b.split()),
                "raw_a_first": record.raw_first,
                "raw_a_second": record.raw_second,
            }
            out.write(json.dumps(row) + "\n")
            out.flush()
            done += 1
            logger.info(
                "[%d/%d] %s point %d: %s (margin %+.2f, score gap %.3f, %.0f s)",
                done, len(todo), t.question.id, t.index + 1, record.outcome, record.margin,
                t.pair.score_a - t.pair.score_b, time.monotonic() - started,
            )  # fmt: skip

        await asyncio.gather(*(one(t) for t in todo))


async def judge_with(args: argparse.Namespace, todo: Sequence[Target]) -> None:
    async with httpx.AsyncClient(timeout=600) as client:
        judge = Judge(client, args.judge_url, args.judge_model, args.judge_api_key)
        await judge_all(judge, todo, args.out, args.concurrency)


def agreement(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the judge read the score's order on ``rows``: its verdicts, the share of decided
    points where it prefers the score's best (interval over questions), words kept and cut."""
    by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_question[r["question_id"]].append(r)
    groups = list(by_question.values())

    def share(sample: Sequence[list[dict[str, Any]]]) -> float:
        decided = [r for g in sample for r in g if r["outcome"] != "tie"]
        return sum(r["outcome"] == "win" for r in decided) / len(decided) if decided else 0.5

    decided = [r for r in rows if r["outcome"] != "tie"]
    kept = [r["words_a"] if r["outcome"] == "win" else r["words_b"] for r in decided]
    cut = [r["words_b"] if r["outcome"] == "win" else r["words_a"] for r in decided]
    return {
        "points": len(rows),
        "questions": len(groups),
        "judge_prefers_score_best": sum(r["outcome"] == "win" for r in rows),
        "judge_prefers_score_worst": sum(r["outcome"] == "loss" for r in rows),
        "ties": sum(r["outcome"] == "tie" for r in rows),
        "agreement_of_decided": share(groups) if decided else None,
        "agreement_ci95": list(bootstrap_interval(groups, share)) if decided else None,
        "median_words_preferred": statistics.median(kept) if kept else None,
        "median_words_rejected": statistics.median(cut) if cut else None,
    }


def summarise(path: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    latest = {(r["question_id"], r["index"]): r for r in rows}  # a rejudged point: its last
    ok = [r for r in latest.values() if not r["failed"]]
    wide = [r for r in ok if r["score_a"] - r["score_b"] >= MIN_GAP]
    narrow = [r for r in ok if r["score_a"] - r["score_b"] < MIN_GAP]
    return {
        "failed_points": sum(bool(r["failed"]) for r in latest.values()),
        "all": agreement(ok),
        f"score gap >= {MIN_GAP} (a score pair)": agreement(wide),
        f"score gap < {MIN_GAP} (no score pair)": agreement(narrow),
    }


def print_table(summary: dict[str, Any]) -> None:
    print("| points | n (questions) | judge prefers the score's best / its worst / tie | "
          "agreement of decided [95% CI] | words preferred / rejected (median) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, row in summary.items():
        if not isinstance(row, dict) or not row["points"]:
            continue
        ci = row["agreement_ci95"]
        share = (
            f"{row['agreement_of_decided']:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
            if ci is not None
            else "–"
        )
        print(
            f"| {label} | {row['points']} ({row['questions']}) | "
            f"{row['judge_prefers_score_best']} / {row['judge_prefers_score_worst']} / "
            f"{row['ties']} | {share} | "
            f"{row['median_words_preferred']} / {row['median_words_rejected']} |"
        )
    print(f"failed points: {summary['failed_points']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pairs", type=Path, help="the preference data step's --out (its raw cache is read)"
    )
    parser.add_argument("--judge-url", required=True, help="OpenAI base URL (…/v1)")
    parser.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--judge-api-key")
    parser.add_argument("--questions", type=Path, help="the tuning questions (default: bundled)")
    parser.add_argument(
        "--length-ratio", type=float, default=None, help="as the data step's (default: any lengths)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="points judged at once (2)")
    parser.add_argument("--out", type=Path, required=True, help="verdicts (JSONL, appended)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    questions = {q.id: q for q in load_questions(args.questions or bundled_questions_path())}
    cache = load_raw_cache(raw_cache_path(args.pairs))
    if not cache:
        parser.error(f"no candidates in {raw_cache_path(args.pairs)}")
    found = targets(questions, cache, PairRule(length_ratio=args.length_ratio))
    seen = judged_keys(args.out)
    todo = [t for t in found if t.key not in seen]
    logger.info("%d points for the judge, %d already judged", len(found), len(found) - len(todo))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(judge_with(args, todo))
    summary = summarise(args.out) | {"command": " ".join(sys.argv), "judge_model": args.judge_model}
    summary_path = args.out.with_name(args.out.stem + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    print_table(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
