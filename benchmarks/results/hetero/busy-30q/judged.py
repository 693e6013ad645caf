"""The judged cost of the cloud-busy rule in these runs: per arrival, the candidate (eft +
``load_decision``, this directory's ``eft-busy-N``) against the same slot's answer of the
default (``../loop-stop-30q/eft-N``), split by whether the rule cut the candidate's outline.

    python benchmarks/results/hetero/busy-30q/judged.py 1 2 3

Reads ``judge-N.json`` (``benchmarks/rejudge.py --phase load``); prints the table of
docs/benchmarks.md and writes ``judged.json``. Net win rate from expected grades, with a
bootstrap 95% interval over questions (a question's runs resampled together).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
NET = {"win": 1, "loss": -1}


def rows(runs: list[str]) -> list[dict[str, object]]:
    out = []
    for n in runs:
        judged = json.loads((HERE / f"judge-{n}.json").read_text())
        (pair,) = judged["pairs"].values()
        mine = json.loads((HERE / f"eft-busy-{n}" / "results.json").read_text())["requests"]
        base_path = HERE.parent / "loop-stop-30q" / f"eft-{n}" / "results.json"
        theirs = json.loads(base_path.read_text())["requests"]
        cand = {r["question_id"]: r["answer"] for r in mine}
        base = {r["question_id"]: r["answer"] for r in theirs}
        for record in pair["records"]:
            q = record["question_id"]
            ext = cand[q]["extension"]
            out.append(
                {
                    "run": n,
                    "question": q,
                    "cut": (ext.get("load") or {}).get("reason") == "cloud_busy"
                    and ext["reason"] == "outline",
                    "outcome": record["outcome"],
                    "margin": record["margin"],
                    "words_ratio": len(cand[q]["text"].split()) / len(base[q]["text"].split()),
                }
            )
    return out


def net(sub: list[dict[str, object]]) -> float:
    return sum(NET.get(str(r["outcome"]), 0) for r in sub) / len(sub)


def interval(sub: list[dict[str, object]], resamples: int = 2000) -> tuple[float, float]:
    by_question: dict[object, list[dict[str, object]]] = {}
    for r in sub:
        by_question.setdefault(r["question"], []).append(r)
    keys, rng = sorted(by_question, key=str), random.Random(0)
    values = sorted(
        net([r for k in (rng.choice(keys) for _ in keys) for r in by_question[k]])
        for _ in range(resamples)
    )
    return values[int(0.025 * resamples)], values[int(0.975 * resamples) - 1]


def main() -> int:
    everything = rows(sys.argv[1:])
    table = []
    print("| arrivals | n | W/L/T | net [95% CI] | mean margin | words / default's (median) |")
    print("|---|---|---|---|---|---|")
    for name, sub in [
        ("all", everything),
        ("outline cut to 4 points", [r for r in everything if r["cut"]]),
        ("the rest", [r for r in everything if not r["cut"]]),
    ]:
        wins = sum(r["outcome"] == "win" for r in sub)
        losses = sum(r["outcome"] == "loss" for r in sub)
        low, high = interval(sub)
        margin = statistics.mean(float(str(r["margin"])) for r in sub)
        words = statistics.median(float(str(r["words_ratio"])) for r in sub)
        print(
            f"| {name} | {len(sub)} | {wins}/{losses}/{len(sub) - wins - losses} | "
            f"{net(sub):+.2f} [{low:+.2f}, {high:+.2f}] | {margin:+.2f} | {words:.2f} |"
        )
        table.append({"arrivals": name, "n": len(sub), "wins": wins, "losses": losses,
                      "net": net(sub), "ci95": [low, high], "mean_margin": margin,
                      "words_ratio_median": words})  # fmt: skip
    (HERE / "judged.json").write_text(json.dumps({"runs": sys.argv[1:], "rows": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
