"""Sketches of two cloud models side by side: the stock 1.5B and its sketcher LoRA.

The sketcher's data rule (docs/fine-tuning.md, "The sketcher") wants outlines that are
*brief* (short titles, no padding), *complete* (the points the model usually plans) and
*well-formed* (3-8 points, titles of at most 6 words, none restating the question, none
overlapping another). This script measures those on questions the sketcher never saw, with
the same prompt the gateway sends (``sketch_messages``, outline only) and the same sampling
as ``pice tune data --role sketcher``: per question and model, one greedy outline (what the
gateway gets) and ``--samples - 1`` more at ``--temperature``.

- *Form*: the greedy outline through the data's filters (``pice_tune.sketcher``): the share
  that passes, and the first reason for each that does not.
- *Brevity*: points, words per title, title words per outline.
- *Completeness*: the greedy outline against a **shared reference**, the tempered samples of
  *both* models (so neither model is measured only against itself): recall (share of the
  reference's points one of its titles covers) and precision (share of its titles the
  reference also has), and their F1, as in the data's choice. Lexical overlap: a proxy, not a
  judge; it cannot tell "sunlight" from "sunny".
- *Time*: seconds for the greedy outline (the sketch every answer waits for).
- With ``--frame`` (the framed prompt, the gateway's default for the stock model): the share
  of greedy sketches that turned to prose (the gateway then has the cloud answer whole) and
  the share with a closing sentence; the filters include the frame's (``no_opening``,
  ``no_closing``, ``sections``).

Models are asked in a random order per question (``--seed``), so neither always runs on a
cache the other warmed. Paired differences (second model − first) have percentile-bootstrap
95% intervals over questions. Progress on stderr; raw outlines cached in ``--out``'s
``.raw.jsonl`` (a re-run asks only the missing questions). Questions: any JSONL with
``question`` (rows with a ``label`` other than ``outline`` are skipped); those within word
Jaccard ``--max-jaccard`` of a training question of ``--exclude`` (default: the bundled tune
questions) are dropped and counted.

    pice edge serve --model qwen2.5-coder-1.5b-instruct --threads 2 --port 8300 \
        --lora-module pice-sketcher=WORKDIR/sketcher-adapter.gguf &
    python benchmarks/sketch_eval.py benchmarks/router/heldout.jsonl \
        --url http://127.0.0.1:8300/v1 \
        --models stock=qwen2.5-coder-1.5b-instruct,tuned=pice-sketcher \
        --out benchmarks/results/sketcher/sketch_eval.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pice_bench.stats import bootstrap_interval
from pice_tune import sketcher
from pice_tune.dataset import TuneQuestion, load_questions
from pice_tune.distill import (
    FRAMED_MAX_TOKENS,
    SketchSampling,
    Teacher,
    TeacherConfig,
    read_sample,
    sample_sketches,
)
from pice_tune.filters import words


def word_set(text: str) -> set[str]:
    return set(words(text))


def jaccard(a: str, b: str) -> float:
    x, y = word_set(a), word_set(b)
    return len(x & y) / len(x | y) if x | y else 0.0


def read_questions(
    path: Path, exclude: Sequence[TuneQuestion], max_jaccard: float
) -> tuple[list[TuneQuestion], int]:
    """The outline questions of ``path`` not close to a training question, and how many
    were dropped for being close."""
    train = [q.question for q in exclude if q.split == "train"]
    out, close = [], 0
    for n, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label", "outline") != "outline":
            continue
        text = str(row.get("question") or row.get("prompt"))
        if any(jaccard(text, t) > max_jaccard for t in train):
            close += 1
            continue
        qid = str(row.get("id") or f"{path.stem}-{n:03d}")
        out.append(
            TuneQuestion(id=qid, category=str(row.get("category", "")), question=text, split="dev")
        )
    return out, close


@dataclass(frozen=True)
class Greedy:
    """One model's greedy outline of one question, measured."""

    points: tuple[str, ...]
    reason: str | None  # the first filter that rejects it, None if it passes
    seconds: float
    recall: float
    precision: float
    opening: bool = False  # framed: the parser gave an opening line
    closing: bool = False  # framed: and a closing sentence

    @property
    def f1(self) -> float:
        total = self.recall + self.precision
        return 0.0 if total == 0 else 2 * self.recall * self.precision / total


def measure(question: str, raw: dict[str, dict[str, Any]], *, frame: bool) -> dict[str, Greedy]:
    """Each model's greedy outline, against the tempered samples of every model."""
    pool = [
        p
        for r in raw.values()
        for s in r["samples"][1:]
        for p in read_sample(question, s, frame=frame).points
    ]
    out = {}
    for label, r in raw.items():
        sample = read_sample(question, r["samples"][0], frame=frame)
        out[label] = Greedy(
            points=sample.points,
            reason=sketcher.reject_reason(sample),
            seconds=float(r["greedy_seconds"]),
            recall=sketcher.covered_share(pool, sample.points, question),
            precision=sketcher.covered_share(sample.points, pool, question),
            opening=sample.opening is not None,
            closing=sample.closing is not None,
        )
    return out


def timed_samples(
    teacher: Teacher, question: TuneQuestion, sampling: SketchSampling
) -> dict[str, Any]:
    """One model's samples of one question, asked as ``pice tune data --role sketcher`` asks
    them (:func:`pice_tune.distill.sample_sketches`), and the greedy outline's time."""
    samples = sample_sketches(teacher, question, sampling)["samples"]
    return {"samples": samples, "greedy_seconds": samples[0]["seconds"]}


def summary(rows: Sequence[Greedy]) -> dict[str, Any]:
    outlines = [r for r in rows if r.points]
    points = sum(len(r.points) for r in outlines)
    words = sum(sketcher.title_words(r.points) for r in outlines)
    return {
        "questions": len(rows),
        "outlines": len(outlines),
        "pass_share": round(sum(r.reason is None for r in rows) / len(rows), 3),
        "prose_share": round(sum(not r.points for r in rows) / len(rows), 3),
        "opening_share": round(sum(r.opening for r in rows) / len(rows), 3),
        "closing_share": round(sum(r.closing for r in rows) / len(rows), 3),
        "rejected": dict(Counter(r.reason for r in rows if r.reason is not None)),
        "mean_points": round(points / len(outlines), 2) if outlines else None,
        "words_per_title": round(words / points, 2) if points else None,
        "title_words_per_outline": round(words / len(outlines), 2) if outlines else None,
        "recall": round(statistics.fmean(r.recall for r in rows), 3),
        "precision": round(statistics.fmean(r.precision for r in rows), 3),
        "f1": round(statistics.fmean(r.f1 for r in rows), 3),
        "greedy_seconds_p50": round(statistics.median(r.seconds for r in rows), 2),
    }


# The form of a greedy sketch, per question (benchmarks/sketch_engines.py reads these too).
FORM_MEASURES: dict[str, Callable[[Greedy], float]] = {
    "pass_share": lambda g: float(g.reason is None),
    "prose_share": lambda g: float(not g.points),
    "closing_share": lambda g: float(g.closing),
    "points": lambda g: float(len(g.points)),
    "title_words": lambda g: float(sketcher.title_words(g.points)),
}
# And its completeness against the shared pool of tempered samples.
MEASURES: dict[str, Callable[[Greedy], float]] = {
    **FORM_MEASURES,
    "f1": lambda g: g.f1,
    "recall": lambda g: g.recall,
    "precision": lambda g: g.precision,
}


def paired(pairs: Sequence[tuple[Greedy, Greedy]]) -> dict[str, Any]:
    """Second − first per measure, mean over questions with a bootstrap interval (the
    seconds as the ratio of medians)."""
    out: dict[str, Any] = {}
    for name, value in MEASURES.items():
        diffs = [value(b) - value(a) for a, b in pairs]
        low, high = bootstrap_interval(diffs, statistics.fmean)
        out[name] = {
            "mean": round(statistics.fmean(diffs), 3),
            "ci95": [round(low, 3), round(high, 3)],
        }

    def ratio(items: Sequence[tuple[Greedy, Greedy]]) -> float:
        return statistics.median(b.seconds for _, b in items) / statistics.median(
            a.seconds for a, _ in items
        )

    low, high = bootstrap_interval(pairs, ratio)
    out["greedy_seconds_ratio"] = {
        "value": round(ratio(pairs), 3),
        "ci95": [round(low, 3), round(high, 3)],
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("questions", type=Path)
    ap.add_argument("--url", required=True, help="OpenAI base URL serving both models")
    ap.add_argument("--models", required=True, help="LABEL=MODEL,LABEL=MODEL (first = baseline)")
    ap.add_argument("--exclude", type=Path, help="tune questions (default: bundled)")
    ap.add_argument("--max-jaccard", type=float, default=0.6)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, help="per sketch (96; framed: 160)")
    ap.add_argument("--frame", action="store_true", help="the framed prompt (progressive.frame)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="ask a random N of the questions (--seed)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    models = dict(pair.split("=", 1) for pair in args.models.split(","))
    if len(models) != 2:
        ap.error("--models takes two LABEL=MODEL pairs")
    questions, close = read_questions(
        args.questions, load_questions(args.exclude), args.max_jaccard
    )
    if args.limit and args.limit < len(questions):  # a seeded draw, in the file's order
        picked = set(random.Random(f"pick:{args.seed}").sample(range(len(questions)), args.limit))
        questions = [q for i, q in enumerate(questions) if i in picked]
    max_tokens = args.max_tokens or (FRAMED_MAX_TOKENS if args.frame else 96)
    sampling = SketchSampling(args.samples, args.temperature, args.seed, max_tokens, args.frame)
    teachers = {label: Teacher(TeacherConfig(args.url, model)) for label, model in models.items()}
    raw_path = args.out.with_suffix(".raw.jsonl")
    cache: dict[str, dict[str, Any]] = {}
    if raw_path.exists():
        for line in raw_path.read_text().splitlines():
            row = json.loads(line)
            cache[row["question_id"]] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"sketch-eval:{args.seed}")
    started = time.monotonic()
    with raw_path.open("a") as raw_file:
        for n, q in enumerate(questions, 1):
            order = list(models)
            rng.shuffle(order)  # drawn for every question, cached or not: a resumed run
            if q.id in cache:  # keeps the order an uninterrupted one would have drawn
                continue
            row = {
                "question_id": q.id,
                "order": order,
                "models": {label: timed_samples(teachers[label], q, sampling) for label in order},
            }
            raw_file.write(json.dumps(row) + "\n")
            raw_file.flush()
            cache[q.id] = row
            elapsed = time.monotonic() - started
            print(f"[{n}/{len(questions)}] {q.id} {elapsed:.0f}s", file=sys.stderr, flush=True)
    for teacher in teachers.values():
        teacher.close()

    first, second = list(models)
    measured = {
        q.id: measure(q.question, cache[q.id]["models"], frame=args.frame) for q in questions
    }
    result: dict[str, Any] = {
        "questions_file": str(args.questions),
        "questions": len(questions),
        "dropped_close_to_training": close,
        "models": models,
        "sampling": asdict(sampling),
        "summary": {label: summary([m[label] for m in measured.values()]) for label in models},
        "difference": f"{second} - {first}",
        "paired": paired([(m[first], m[second]) for m in measured.values()]),
        "per_question": {
            qid: {
                label: {
                    "points": list(g.points),
                    "reason": g.reason,
                    "f1": round(g.f1, 3),
                    "seconds": g.seconds,
                }
                for label, g in m.items()
            }
            for qid, m in measured.items()
        },
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(questions)} questions ({close} dropped as close to a training question)")
    print(
        "| model | pass filters | rejected | prose | closing | points | words/title | "
        "title words | recall | precision | F1 | greedy s p50 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, s in result["summary"].items():
        print(
            f"| {label} | {s['pass_share']:.0%} | {s['rejected']} | {s['prose_share']:.0%} | "
            f"{s['closing_share']:.0%} | {s['mean_points']} | "
            f"{s['words_per_title']} | {s['title_words_per_outline']} | {s['recall']} | "
            f"{s['precision']} | {s['f1']} | {s['greedy_seconds_p50']} |"
        )
    print(f"\n{result['difference']}, mean over questions [95% CI]:")
    for name, d in result["paired"].items():
        value = d.get("mean", d.get("value"))
        print(f"- {name}: {value:+} [{d['ci95'][0]:+}, {d['ci95'][1]:+}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
