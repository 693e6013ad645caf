"""Time to first token of direct answers: model `pice` (router says direct) vs `pice-cloud`.

The router's promise is that a question it sends to the cloud costs what cloud-only costs,
plus the decision. Against a running stack (`make run` / `pice up`), each question is asked
through ONE of the two models, chosen at random with the two halves balanced: asking the same
question twice would let the second ask reuse the cloud's prefix cache (measured: the second
ask of a pair was ~0.12 s whichever model it went to). `max_tokens` is small (only the first
token matters); the time from sending to the first content chunk is recorded. The ratio's
interval resamples each model's questions independently. Prints a table and writes JSON.

python benchmarks/router_ttft.py --questions benchmarks/router/heldout.jsonl --label direct \
    --limit 60 --out benchmarks/results/router_ttft.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from openai import OpenAI


def first_token_seconds(client: OpenAI, model: str, question: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=8,
        stream=True,
    )
    first: float | None = None
    report: dict[str, Any] = {}
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        report = (chunk.model_extra or {}).get("pice", report) or report
    return (first if first is not None else float("nan")), report


def bootstrap_ratio(a: list[float], b: list[float], rounds: int = 5000) -> tuple[float, float]:
    """95% interval of median(a) / median(b), each sample resampled on its own."""
    rng = random.Random(0)
    ratios = []
    for _ in range(rounds):
        ra = rng.choices(a, k=len(a))
        rb = rng.choices(b, k=len(b))
        ratios.append(statistics.median(ra) / statistics.median(rb))
    ratios.sort()
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--questions", type=Path, default=Path("benchmarks/router/heldout.jsonl"))
    parser.add_argument("--label", default="direct")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    questions = [r["question"] for r in rows if r["label"] == args.label][: args.limit]
    client = OpenAI(base_url=args.url, api_key="unused", max_retries=0, timeout=300)
    rng = random.Random(args.seed)
    models = ["pice", "pice-cloud"] * ((len(questions) + 1) // 2)
    rng.shuffle(models)
    asks: list[dict[str, Any]] = []
    for n, (question, model) in enumerate(zip(questions, models, strict=False), start=1):
        seconds, report = first_token_seconds(client, model, question)
        asks.append(
            {
                "question": question,
                "model": model,
                "ttft_s": seconds,
                "router": report.get("router"),
            }
        )
        print(f"[{n}/{len(questions)}] {model:10} {seconds:.2f}s", file=sys.stderr, flush=True)
    pice = [a["ttft_s"] for a in asks if a["model"] == "pice"]
    cloud = [a["ttft_s"] for a in asks if a["model"] == "pice-cloud"]
    routed_direct = sum(1 for a in asks if (a["router"] or {}).get("decision") == "direct")
    lo, hi = bootstrap_ratio(pice, cloud)
    summary = {
        "questions": len(asks),
        "pice_asks": len(pice),
        "pice_routed_direct": routed_direct,
        "pice_ttft_p50_s": statistics.median(pice),
        "cloud_ttft_p50_s": statistics.median(cloud),
        "ratio_p50": statistics.median(pice) / statistics.median(cloud),
        "ratio_ci95": [lo, hi],
        "router_ms_p50": statistics.median(
            a["router"]["ms"] for a in asks if a["model"] == "pice" and a["router"]
        ),
    }
    print(
        "| asks (pice / pice-cloud) | routed direct | pice TTFT p50 | pice-cloud TTFT p50 "
        "| ratio | 95% CI |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(pice)} / {len(cloud)} | {routed_direct} | {summary['pice_ttft_p50_s']:.3f} s | "
        f"{summary['cloud_ttft_p50_s']:.3f} s | {summary['ratio_p50']:.3f} | {lo:.3f}–{hi:.3f} |"
    )
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "asks": asks}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
