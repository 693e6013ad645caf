"""The ensemble's selector on held-out questions, point by point: which of k candidates the
judge prefers — the shipped score's pick, the greedy candidate, or the most confident.

The judge's verdicts on the tuning questions' candidates (``judge_candidates.py``) read the
ensemble's score against the judge on *training* questions; this asks the same of questions
the tuning and the weights never saw. Outlines come from committed runs (no cloud asked):
the bench's progressive answers (``pice bench`` results, their points) and the stock cloud's
greedy sketches of ``sketch_eval.py`` (its raw JSONL). The edge is asked for k candidates of
every point as the tuning data step asks it (``pice_tune.preference.EdgeSampler``: candidate 0
greedy, the others sampled, one job per group of points), and each point gets three picks:

- ``greedy``: candidate 0, what the edge shows without an ensemble;
- ``shipped``: the gateway's own choice (``ensemble.winner`` over ``score_candidates``);
- ``confidence``: the highest ``exp(logprob_mean)`` less the shipped penalties (cut off,
  repetition, restatement): the perplexity criterion alone.

Where two picks differ, the judge is asked about them as ``judge_candidates.py`` asks
(``judge_points.py``'s protocol: the question, the point's title, the two bodies; both orders,
expected grades), the shipped pick as ``a``. The 1.5B judge favours the longer body, so the
verdicts are also split by the bodies' lengths (``a`` longer, like length, ``a`` shorter).
Every phase is resumable: candidates and verdicts are appended as soon as they are known.

    python benchmarks/selector_heldout.py --bench R/pice-progressive/results.json \\
        --sketches S/sketch_eval.raw.jsonl --sketch-questions benchmarks/router/heldout.jsonl \\
        --judge-url http://127.0.0.1:8200/v1 --work W
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_candidates import Target, agreement, judge_all, judged_keys
from sketch_eval import read_questions

from pice_bench.judge import Judge
from pice_gateway.progressive.ensemble import (
    P_CUT_OFF,
    P_REPETITION,
    P_RESTATEMENT,
    Candidate,
    Scored,
    score_candidates,
    winner,
)
from pice_gateway.settings import ProgressiveSettings
from pice_tune.dataset import TuneQuestion, bundled_questions_path, load_questions
from pice_tune.distill import ask_all, read_sample
from pice_tune.filters import Expansion, reject_reason
from pice_tune.jsonl import read_rows
from pice_tune.preference import CandidateSampling, EdgeSampler, JudgeTarget, describe
from pice_tune.steps import edge_agent

logger = logging.getLogger("selector_heldout")

PICKS = ("greedy", "shipped", "confidence")
COMPARISONS = (("shipped", "greedy"), ("shipped", "confidence"))
# Two bodies are of like length when neither has more than this many times the other's words.
LIKE_LENGTH = 1.25


@dataclass(frozen=True)
class Outline:
    question: TuneQuestion  # id prefixed by its source: ``bench:…`` or ``sketch:…``
    titles: tuple[str, ...]


def bench_outlines(results: Path, questions: Path) -> list[Outline]:
    """The points of every answer a ``pice bench`` run outlined (not its prose fallbacks)."""
    text = {
        str(row["id"]): str(row["question"])
        for row in map(json.loads, questions.read_text().splitlines())
    }
    out = []
    for request in json.loads(results.read_text())["requests"]:
        answer = request.get("answer") or {}
        if request.get("phase") != "latency" or answer.get("served_mode") != "progressive:outline":
            continue
        qid = str(request["question_id"])
        question = TuneQuestion(f"bench:{qid}", str(request["category"]), text[qid], "dev")
        out.append(Outline(question, tuple(answer["points"])))
    return out


def sketch_outlines(raw: Path, questions: Path, model: str) -> list[Outline]:
    """``model``'s greedy framed sketch of every question in a ``sketch_eval.py`` raw file,
    read by the gateway's parser (``read_questions`` names the questions as the eval did) and
    cut at the gateway's point cap."""
    named, _ = read_questions(questions, load_questions(bundled_questions_path()), 0.6)
    by_id = {q.id: q for q in named}
    cap = ProgressiveSettings().max_points
    out = []
    for line in raw.read_text().splitlines():
        row = json.loads(line)
        question = by_id[str(row["question_id"])]
        sample = read_sample(question.question, row["models"][model]["samples"][0], frame=True)
        points = tuple(sample.points[:cap])
        if len(points) >= 2:
            q = TuneQuestion(f"sketch:{question.id}", question.category, question.question, "dev")
            out.append(Outline(q, points))
    return out


def confidence_pick(scored: Sequence[Scored]) -> int:
    """The most confident eligible candidate, less the shipped penalties (lowest index on a
    tie, as :func:`winner`)."""
    pool = [s for s in scored if s.eligible] or list(scored)

    def value(s: Scored) -> float:
        penalty = P_CUT_OFF * s.cut_off + P_REPETITION * s.repetition
        return round(s.confidence - penalty - P_RESTATEMENT * s.restatement, 6)

    return min(pool, key=lambda s: (-value(s), s.index)).index


def picks(outline: Outline, index: int, candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The three picks of one point and every candidate's score."""
    cands = [
        Candidate(i, str(c["text"]), c["logprob_mean"], c["finish_reason"])
        for i, c in enumerate(candidates)
    ]
    scored = score_candidates(
        cands, title=outline.titles[index], question=outline.question.question
    )
    return {
        "greedy": 0,
        "shipped": winner(scored),
        "confidence": confidence_pick(scored),
        "scores": [s.score for s in scored],
    }


def checks(outline: Outline, index: int, candidate: dict[str, Any]) -> dict[str, Any]:
    """Judge-free facts of a shown body: the tuning filters' verdict, words, cut off."""
    text = str(candidate["text"]).strip()
    fault = reject_reason(
        Expansion(
            outline.question.question, outline.titles, index, text, candidate["finish_reason"]
        )
    )
    return {
        "fault": fault,
        "words": len(text.split()),
        "cut": candidate["finish_reason"] == "length",
    }


def sample_all(
    args: argparse.Namespace, outlines: Sequence[Outline], out: Path
) -> dict[str, dict[str, Any]]:
    """Every outline's candidates, kept in ``<out>.raw.jsonl`` as the tuning data steps keep
    theirs (:func:`ask_all`: an outline already there is not asked again)."""
    sampling = CandidateSampling(
        k=args.k, temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens
    )
    titles = {o.question.id: o.titles for o in outlines}
    with contextlib.ExitStack() as stack:
        sampler = EdgeSampler(
            args.edge_model,
            sampling,
            lambda: stack.enter_context(
                edge_agent(
                    args.edge_url, args.edge_model, None, args.threads, args.work / "edge-logs"
                )
            ),
        )
        try:
            return ask_all(
                [o.question for o in outlines],
                out,
                lambda q: sampler.candidates(q, titles[q.id]),
                lambda raw: (
                    len(raw.get("candidates", ())) == len(titles.get(raw["question_id"], ()))
                ),
                describe,
                logger.info,
            )
        finally:
            sampler.close()


def targets(
    outlines: Sequence[Outline], cache: dict[str, dict[str, Any]], a: str, b: str
) -> list[Target]:
    """Every point whose ``a`` and ``b`` picks show different bodies."""
    found = []
    for outline in outlines:
        raw = cache[outline.question.id]
        for index, candidates in enumerate(raw["candidates"]):
            chosen = picks(outline, index, candidates)
            i, j = chosen[a], chosen[b]
            text_a, text_b = (str(candidates[x]["text"]).strip() for x in (i, j))
            if text_a == text_b:
                continue
            pair = JudgeTarget(i, j, chosen["scores"][i], chosen["scores"][j])
            found.append(
                Target(outline.question, index, outline.titles[index], pair, text_a, text_b)
            )
    return found


def shown(outlines: Sequence[Outline], cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What each pick shows over every point: filter faults, words, cut off, which index."""
    facts: dict[str, list[dict[str, Any]]] = {p: [] for p in PICKS}
    for outline in outlines:
        for index, candidates in enumerate(cache[outline.question.id]["candidates"]):
            chosen = picks(outline, index, candidates)
            for p in PICKS:
                facts[p].append(checks(outline, index, candidates[chosen[p]]) | {"i": chosen[p]})
    out = {}
    for p, rows in facts.items():
        n = len(rows)
        out[p] = {
            "points": n,
            "faulted": sum(r["fault"] is not None for r in rows) / n,
            "faults": {
                f: sum(r["fault"] == f for r in rows) for f in {r["fault"] for r in rows} if f
            },
            "cut": sum(r["cut"] for r in rows) / n,
            "mean_words": statistics.fmean(r["words"] for r in rows),
            "not_greedy": sum(r["i"] != 0 for r in rows) / n,
        }
    return out


def by_length(rows: Sequence[dict[str, Any]], ratio: float = LIKE_LENGTH) -> dict[str, Any]:
    """The verdicts split by the two bodies' words: ``a`` longer than ``ratio`` times ``b``,
    like length, ``a`` shorter. The judge favours longer bodies; within a band that bias
    cannot decide."""
    bands: dict[str, list[dict[str, Any]]] = {"a longer": [], "like length": [], "a shorter": []}
    for r in rows:
        a, b = r["words_a"], r["words_b"]
        band = "a longer" if a > ratio * b else "a shorter" if b > ratio * a else "like length"
        bands[band].append(r)
    return bands


async def judge(args: argparse.Namespace, todo: Sequence[Target], path: Path) -> None:
    async with httpx.AsyncClient(timeout=600) as client:
        judge = Judge(client, args.judge_url, args.judge_model, args.judge_api_key)
        await judge_all(judge, todo, path, args.concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, help="a pice bench results.json (its outlines)")
    parser.add_argument("--bench-questions", type=Path, default=Path("benchmarks/questions.jsonl"))
    parser.add_argument("--sketches", type=Path, help="a sketch_eval.py raw JSONL")
    parser.add_argument("--sketch-questions", type=Path, help="the questions it was run on")
    parser.add_argument("--sketch-model", default="stock", help="whose greedy sketch (stock)")
    parser.add_argument("--edge-url", help="the edge agent asked (default: embedded)")
    parser.add_argument("--edge-model", default="qwen2.5-coder-0.5b-instruct-q8_0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=3, help="candidates per point (3)")
    parser.add_argument("--temperature", type=float, default=0.7, help="the samples' (0.7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--judge-url", help="OpenAI base URL (…/v1); without it, no judging")
    parser.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--judge-api-key")
    parser.add_argument("--concurrency", type=int, default=2, help="points judged at once (2)")
    parser.add_argument("--work", type=Path, required=True, help="candidates, verdicts, summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    outlines: list[Outline] = []
    if args.bench:
        outlines += bench_outlines(args.bench, args.bench_questions)
    if args.sketches:
        if not args.sketch_questions:
            parser.error("--sketches needs --sketch-questions")
        outlines += sketch_outlines(args.sketches, args.sketch_questions, args.sketch_model)
    if not outlines:
        parser.error("no outlines: give --bench and/or --sketches")
    args.work.mkdir(parents=True, exist_ok=True)
    cache = sample_all(args, outlines, args.work / "candidates")

    summary: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "outlines": len(outlines),
        "points": sum(len(o.titles) for o in outlines),
        "shown": shown(outlines, cache),
    }
    for a, b in COMPARISONS:
        found = targets(outlines, cache, a, b)
        path = args.work / f"verdicts-{a}-vs-{b}.jsonl"
        if args.judge_url:
            seen = judged_keys(path)
            todo = [t for t in found if t.key not in seen]
            logger.info("%s vs %s: %d points differ, %d to judge", a, b, len(found), len(todo))
            if todo:
                asyncio.run(judge(args, todo, path))
        keys = {t.key for t in found}
        rows = {(r["question_id"], r["index"]): r for r in read_rows(path)}
        ok = [r for k, r in rows.items() if k in keys and not r["failed"]]
        summary[f"{a} vs {b}"] = {"differ": len(found), **agreement(ok)} | {
            "by_length": {band: agreement(rows) for band, rows in by_length(ok).items()}
        }
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print_table(summary)
    return 0


def print_table(summary: dict[str, Any]) -> None:
    print(f"{summary['outlines']} outlines, {summary['points']} points")
    print("| pick | not greedy | a filter's fault | cut off | words (mean) |")
    print("|---|---|---|---|---|")
    for pick, row in summary["shown"].items():
        print(f"| {pick} | {row['not_greedy']:.1%} | {row['faulted']:.1%} | {row['cut']:.1%} | "
              f"{row['mean_words']:.1f} |")  # fmt: skip
    print(
        "| pair | differ | judged (questions) | a wins / b wins / tie "
        "| a's share of decided [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for a, b in COMPARISONS:
        row = summary[f"{a} vs {b}"]
        ci = row["agreement_ci95"]
        share = (
            "–" if ci is None else f"{row['agreement_of_decided']:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"
        )
        print(f"| {a} vs {b} | {row['differ']} | {row['points']} ({row['questions']}) | "
              f"{row['judge_prefers_score_best']} / {row['judge_prefers_score_worst']} / "
              f"{row['ties']} | {share} |")  # fmt: skip
        for band, sub in row["by_length"].items():
            if sub["points"]:
                ci = sub["agreement_ci95"]
                share = (
                    "–"
                    if ci is None
                    else (f"{sub['agreement_of_decided']:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]")
                )
                print(f"| … {band} | | {sub['points']} ({sub['questions']}) | "
                      f"{sub['judge_prefers_score_best']} / {sub['judge_prefers_score_worst']} / "
                      f"{sub['ties']} | {share} |")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
