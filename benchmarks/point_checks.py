"""Judge-free checks of every point of two runs' answers: the tuning filters, applied to what
the edge wrote (``pice_tune.filters``: restated premise, repeats, a body cut mid-sentence) and
the edge's own finish reason per point (``length``: it ran to the point's token cap), the
words the edge's prompt allows (``too_long``), and a sentence of five or more words that
another point of the same answer also says (``echoes_another_point``: each point is expanded
on its own, so nothing else stops two points from saying the same thing). Also the p50
latency and time-to-first-token ratios B / A, and how many answers have a frame
(``progressive.frame``: an opening line and a closing sentence, from the ``pice`` object's
``sketch``).

The pairwise judge can tie almost everything (the 1.5B judge graded tuned and stock answers
equal on all 40 questions, docs/fine-tuning.md); these checks count what changed. Both runs
must be ``pice bench`` runs on the same questions (same cloud, so the same greedy sketches),
of the same mode, or run B's named by ``--mode-b`` (e.g. ``pice-ensemble`` against
``pice-progressive``). Per run: points, the share failing each check and the mean answer length;
the difference B − A per check with a percentile-bootstrap 95% interval over questions
(questions resampled, each bringing all its points).

    python benchmarks/point_checks.py stock/results.json tuned/results.json \
        --out benchmarks/results/tuned-edge/point_checks.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pice_bench.questions import Question, load_questions
from pice_bench.stats import bootstrap_interval
from pice_tune.filters import Expansion, repeats, restated_premise, too_long, truncated

LINE = re.compile(r"^(\d+)\.\s+\*\*(.+?)\*\*:\s*(.*)$")
CHECKS = (
    "restated_premise",
    "repeat",
    "cut_mid_sentence",
    "hit_token_cap",
    "over_word_limit",
    "echoes_another_point",
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_ECHO_WORDS = 5


def sentences(body: str) -> set[str]:
    """A body's sentences of MIN_ECHO_WORDS or more words, lower-cased, punctuation dropped."""
    found = set()
    for sentence in SENTENCE_END.split(body):
        words = re.findall(r"[\w']+", sentence.lower())
        if len(words) >= MIN_ECHO_WORDS:
            found.add(" ".join(words))
    return found


def echoes(bodies: Sequence[str]) -> list[bool]:
    """Per body: does it share a sentence with another body of the same answer?"""
    own = [sentences(body) for body in bodies]
    return [
        any(mine & theirs for j, theirs in enumerate(own) if j != i) for i, mine in enumerate(own)
    ]


def point_rows(record: dict[str, Any], question: Question) -> list[dict[str, bool]]:
    """One row per point of an answer: which checks it fails."""
    answer = record["answer"]
    points = (answer.get("extension") or {}).get("points") or []
    lines = [m for m in (LINE.match(line) for line in answer["text"].splitlines()) if m]
    titles = tuple(m.group(2) for m in lines)
    bodies = {m.group(2): m.group(3) for m in lines}
    rows = []
    point_bodies = [bodies.get(point["title"], "") for point in points]
    echoed = echoes(point_bodies)
    for i, body in enumerate(point_bodies):
        point = points[i]
        e = Expansion(question.question, titles, i, body, None)
        rows.append(
            {
                "restated_premise": restated_premise(e) is not None,
                "repeat": repeats(e) is not None,
                "cut_mid_sentence": truncated(e) is not None,
                "hit_token_cap": point.get("finish_reason") == "length",
                # More words than the edge's prompt asks for (pice_tune.filters.too_long).
                "over_word_limit": too_long(e) is not None,
                "echoes_another_point": echoed[i],
            }
        )
    return rows


def per_question(path: Path, mode: str, questions: dict[str, Question]) -> dict[str, Any]:
    results = json.loads(path.read_text())
    out = {}
    for r in results["requests"]:
        if r["phase"] != "latency" or r["mode"] != mode or r["answer"].get("error"):
            continue
        q = questions[r["question_id"]]
        sketch = (r["answer"].get("extension") or {}).get("sketch") or {}
        out[q.id] = {
            "points": point_rows(r, q),
            "words": len(r["answer"]["text"].split()),
            "latency_s": float(r["answer"]["latency_s"]),
            "ttft_s": float(r["answer"]["ttft_s"] or "nan"),
            "opening": bool(sketch.get("opening")),
            "closing": bool(sketch.get("closing")),
        }
    return out


def share(items: Sequence[dict[str, Any]], check: str) -> float:
    points = [p for item in items for p in item["points"]]
    failed: int = sum(bool(p[check]) for p in points)
    return failed / max(1, len(points))


def p50_ratio(pairs: Sequence[tuple[Any, Any]], key: str, seed: int) -> dict[str, Any]:
    """B's p50 of ``key`` over A's, with a bootstrap interval over questions."""

    def ratio(sample: Sequence[tuple[Any, Any]]) -> float:
        b_p50: float = statistics.median(y[key] for _, y in sample)
        a_p50: float = statistics.median(x[key] for x, _ in sample)
        return b_p50 / a_p50

    low, high = bootstrap_interval(pairs, ratio, seed=seed)
    return {
        "a_p50_s": statistics.median(x[key] for x, _ in pairs),
        "b_p50_s": statistics.median(y[key] for _, y in pairs),
        "b_over_a": ratio(pairs),
        "b_over_a_ci95": [low, high],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="results.json of run A (e.g. the stock edge)")
    parser.add_argument("b", type=Path, help="results.json of run B (e.g. the tuned edge)")
    parser.add_argument("--mode", default="pice-progressive")
    parser.add_argument("--mode-b", default=None, help="run B's mode, if not --mode's")
    parser.add_argument("--questions", type=Path, default=Path("benchmarks/questions.jsonl"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    questions = {q.id: q for q in load_questions(args.questions)}
    a = per_question(args.a, args.mode, questions)
    b = per_question(args.b, args.mode_b or args.mode, questions)
    ids = sorted(set(a) & set(b))
    if not ids:
        print("no question answered in both runs", file=sys.stderr)
        return 1
    pairs = [(a[q], b[q]) for q in ids]
    table: dict[str, Any] = {}
    for check in CHECKS:

        def difference(sample: Sequence[tuple[Any, Any]], c: str = check) -> float:
            return share([y for _, y in sample], c) - share([x for x, _ in sample], c)

        low, high = bootstrap_interval(pairs, difference, seed=args.seed)
        table[check] = {
            "a": share([x for x, _ in pairs], check),
            "b": share([y for _, y in pairs], check),
            "b_minus_a_ci95": [low, high],
        }
    words = {
        "a": statistics.fmean(x["words"] for x, _ in pairs),
        "b": statistics.fmean(y["words"] for _, y in pairs),
    }

    latency = p50_ratio(pairs, "latency_s", args.seed)
    ttft = p50_ratio(pairs, "ttft_s", args.seed)
    frame = {
        side: {part: sum(row[part] for row in rows) for part in ("opening", "closing")}
        for side, rows in (("a", [x for x, _ in pairs]), ("b", [y for _, y in pairs]))
    }
    n_points = {
        "a": sum(len(x["points"]) for x, _ in pairs),
        "b": sum(len(y["points"]) for _, y in pairs),
    }
    print(f"{len(ids)} questions; points A {n_points['a']}, B {n_points['b']}")
    print("| check | A | B | B − A [95% CI] |\n|---|---|---|---|")
    for check, row in table.items():
        low, high = row["b_minus_a_ci95"]
        print(
            f"| {check} | {row['a']:.1%} | {row['b']:.1%} | "
            f"{row['b'] - row['a']:+.1%} [{low:+.1%}, {high:+.1%}] |"
        )
    print(f"| words per answer (mean) | {words['a']:.0f} | {words['b']:.0f} | |")
    for name, row in (("latency", latency), ("time to first token", ttft)):
        print(
            f"| {name} p50, one request at a time | {row['a_p50_s']:.2f} s | "
            f"{row['b_p50_s']:.2f} s | ×{row['b_over_a']:.2f} "
            f"[{row['b_over_a_ci95'][0]:.2f}, {row['b_over_a_ci95'][1]:.2f}] |"
        )
    print(
        f"| answers with an opening / a closing | {frame['a']['opening']} / "
        f"{frame['a']['closing']} | {frame['b']['opening']} / {frame['b']['closing']} | |"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(sys.argv),
            "a": str(args.a),
            "b": str(args.b),
            "mode": args.mode,
            "mode_b": args.mode_b or args.mode,
            "questions": ids,
            "points": n_points,
            "checks": table,
            "words_mean": words,
            "latency": latency,
            "ttft": ttft,
            "frame": frame,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
