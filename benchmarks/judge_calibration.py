"""Calibrate the pairwise judge on hand-made pairs (see docs/benchmarks.md, "Quality").

The "clear" and "heldout" pairs put a correct, complete answer against a wrong, truncated or
off-topic one; the "reasonable" pairs hold two acceptable answers. Every pair is judged in both
orders with the graded prompt the bench uses (``pice_bench.judge.Judge``) and, for comparison,
with the earlier bare-verdict prompt ([[A]]/[[B]]/[[C]]). Nothing here knows about modes.

Start a judge, e.g. ``pice edge serve --model qwen2.5-coder-1.5b-instruct --threads 1 --port 8177``,
then: python benchmarks/judge_calibration.py --url http://127.0.0.1:8177/v1 --out calib.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from pice_bench.calibration import calibrate
from pice_bench.calibration_pairs import CLEAR, HELDOUT, REASONABLE
from pice_bench.judge import Judge, answer_pair
from pice_bench.winrate import Judgment, combine, combined_margin, parse_verdict

OLD_SYSTEM = (
    "You are an impartial judge. Compare two assistant answers to the user's question. "
    "Judge helpfulness, relevance, accuracy, depth and clarity. Do not let the order of the "
    "answers or their length decide. Reply with the verdict first: [[A]] if answer A is "
    "better, [[B]] if answer B is better, [[C]] for a tie. Then one short sentence of reason."
)


def old_messages(question: str, a: str, b: str) -> list[dict[str, str]]:
    user = answer_pair(question, a, b) + "Verdict ([[A]], [[B]] or [[C]]):"
    return [{"role": "system", "content": OLD_SYSTEM}, {"role": "user", "content": user}]


async def old_verdict(
    client: httpx.AsyncClient, url: str, model: str, q: str, a: str, b: str
) -> tuple[str, str]:
    body = {"model": model, "messages": old_messages(q, a, b), "max_tokens": 24, "temperature": 0.0}
    r = await client.post(url + "/chat/completions", json=body)
    r.raise_for_status()
    reply = r.json()["choices"][0]["message"]["content"] or ""
    return parse_verdict(reply).value, reply


async def run(args: argparse.Namespace) -> None:
    sets: dict[str, Sequence[Sequence[str]]] = {
        "clear": CLEAR,
        "reasonable": REASONABLE,
        "heldout": HELDOUT,
    }
    log: list[dict[str, object]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        judge = Judge(client, args.url, args.model)
        for label in args.sets.split(","):
            print(
                f"== {label} pairs (x = first answer{'' if label == 'reasonable' else ' = better'})"
            )
            for pair in sets[label]:
                q, x, y = pair[0], pair[1], pair[2]
                t0 = time.monotonic()
                if args.old:
                    v1, r1 = await old_verdict(client, args.url, args.model, q, x, y)
                    v2, r2 = await old_verdict(client, args.url, args.model, q, y, x)
                else:
                    v1, r1, v2, r2 = "-", "", "-", ""
                old_out = combine(Judgment.parse(r1), Judgment.parse(r2))
                j1, s1 = await judge.judgment(q, x, y)
                j2, s2 = await judge.judgment(q, y, x)
                new_out = combine(j1, j2)
                margin = combined_margin(j1, j2)
                print(
                    f"- {q[:40]:40} old: {v1}/{v2} -> {old_out.value:4} | new: {j1.scores} "
                    f"{j2.scores} margin={margin:+.2f} -> {new_out.value:4} "
                    f"({time.monotonic() - t0:.0f}s)",
                    flush=True,
                )
                log.append(
                    {
                        "set": label,
                        "question": q,
                        "old": [r1, r2],
                        "old_outcome": old_out.value,
                        "new": [s1, s2],
                        "new_scores": [j1.scores, j2.scores],
                        "margin": margin,
                        "new_outcome": new_out.value,
                    }
                )
        if args.bias:
            cal = await calibrate(Judge(client, args.url, args.model).grade)
            o = cal.orders
            print(
                f"bias: verdict follows position {o.position_following:.0%}, orders agree "
                f"{o.order_agreement:.0%}, position bonus {o.position_bonus:+.2f}, padded beats "
                f"original {cal.padded_wins}/{cal.padded_pairs}, known better wins "
                f"{cal.accuracy:.0%}, grades {o.grades}"
            )
            log.append({"set": "bias", "calibration": dataclasses.asdict(cal)})
    if args.out:
        args.out.write_text(json.dumps(log, indent=1))
    clear = [e for e in log if e["set"] in ("clear", "heldout")]
    old_won = sum(e["old_outcome"] == "win" for e in clear)
    new_won = sum(e["new_outcome"] == "win" for e in clear)
    print(f"clear pairs, better answer won: old {old_won}/{len(clear)}, new {new_won}/{len(clear)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8177/v1", help="judge base URL")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--sets", default="clear,heldout,reasonable")
    parser.add_argument("--no-old", dest="old", action="store_false", help="skip the old prompt")
    parser.add_argument("--out", type=Path, help="write every reply as JSON here")
    parser.add_argument(
        "--bias",
        action="store_true",
        help="also measure position and length bias (pice_bench.calibration, as `pice bench "
        "--calibrate-judge` does)",
    )
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
