"""One sketcher, two serving engines: do its greedy sketches survive the move?

The sketcher LoRA is served two ways: by llama.cpp (the embedded cloud: the Q4_K_M 1.5B with
the adapter exported to GGUF, ``--lora-module``) and by vLLM (the bf16 checkpoint converted
from the same GGUF, with the peft adapter directory, ``--enable-lora``). The weights and the
arithmetic differ, so the greedy sketches can too. This reads two ``sketch_eval.py`` raw files
of the same questions (``--out``'s ``.raw.jsonl``, one per engine, model labels alike) and,
per model label, on the **greedy** sketch only (what the gateway gets):

- the share of questions whose greedy sketch is the same text on both engines;
- each engine's form figures, as ``sketch_eval.py`` counts them (passes the data's filters,
  turned to prose, has its closing, points, title words);
- the second engine minus the first, per question, with percentile-bootstrap 95% intervals.

    python benchmarks/sketch_engines.py benchmarks/router/heldout.jsonl \\
        benchmarks/results/sketcher-framed/sketch_eval.raw.jsonl \\
        benchmarks/results/sketcher-vllm/sketch_eval.raw.jsonl \\
        --names llama.cpp,vllm --frame --out benchmarks/results/sketcher-vllm/engines.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sketch_eval import FORM_MEASURES as MEASURES
from sketch_eval import measure, read_questions

from pice_bench.stats import bootstrap_interval
from pice_tune.dataset import load_questions


def read_raw(path: Path) -> dict[str, dict[str, Any]]:
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["question_id"]: row["models"] for row in rows}


def greedy_only(models: dict[str, Any]) -> dict[str, Any]:
    """The greedy sample of each model (no tempered pool: completeness is not compared)."""
    return {label: {**r, "samples": r["samples"][:1]} for label, r in models.items()}


def compare(
    questions: dict[str, str],
    first: dict[str, dict[str, Any]],
    second: dict[str, dict[str, Any]],
    *,
    frame: bool,
) -> dict[str, Any]:
    """Per model label: identical greedy texts, each engine's means, second − first."""
    shared = [qid for qid in questions if qid in first and qid in second]
    labels = sorted(set.intersection(*(set(first[q]) & set(second[q]) for q in shared)))
    per_model: dict[str, Any] = {}
    for label in labels:
        same = [
            first[q][label]["samples"][0]["text"] == second[q][label]["samples"][0]["text"]
            for q in shared
        ]
        a = [measure(questions[q], greedy_only(first[q]), frame=frame)[label] for q in shared]
        b = [measure(questions[q], greedy_only(second[q]), frame=frame)[label] for q in shared]
        row: dict[str, Any] = {"identical_greedy_share": round(sum(same) / len(shared), 3)}
        for name, value in MEASURES.items():
            diffs = [value(y) - value(x) for x, y in zip(a, b, strict=True)]
            low, high = bootstrap_interval(diffs, statistics.fmean)
            row[name] = {
                "first": round(statistics.fmean(value(x) for x in a), 3),
                "second": round(statistics.fmean(value(y) for y in b), 3),
                "difference": round(statistics.fmean(diffs), 3),
                "ci95": [round(low, 3), round(high, 3)],
            }
        per_model[label] = row
    return {"questions": len(shared), "models": per_model}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("questions", type=Path, help="the questions file both runs asked")
    ap.add_argument("first", type=Path, help="sketch_eval raw file of the first engine")
    ap.add_argument("second", type=Path, help="sketch_eval raw file of the second engine")
    ap.add_argument("--names", default="first,second", help="FIRST,SECOND (engine names)")
    ap.add_argument("--frame", action="store_true", help="the sketches were asked framed")
    ap.add_argument("--max-jaccard", type=float, default=0.6)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    names = args.names.split(",")
    if len(names) != 2:
        ap.error("--names takes two names")
    listed, _ = read_questions(args.questions, load_questions(None), args.max_jaccard)
    questions = {q.id: q.question for q in listed}
    result = {
        "engines": names,
        "files": [str(args.first), str(args.second)],
        **compare(questions, read_raw(args.first), read_raw(args.second), frame=args.frame),
    }
    print(f"{result['questions']} questions; {names[1]} − {names[0]}, greedy sketches")
    print(f"| model | measure | {names[0]} | {names[1]} | difference [95% CI] |")
    print("|---|---|---|---|---|")
    for label, row in result["models"].items():
        print(f"| {label} | identical greedy text | | | {row['identical_greedy_share']:.0%} |")
        for name in MEASURES:
            m = row[name]
            low, high = m["ci95"]
            print(
                f"| {label} | {name} | {m['first']:g} | {m['second']:g} | "
                f"{m['difference']:+g} [{low:+g}, {high:+g}] |"
            )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
