"""What JSON mode costs the edge agent's engine: decode speed with and without a grammar.

``response_format`` on the embedded cloud (the edge agent's ``/v1/chat/completions``) adds
llama.cpp's grammar sampler to every sequence's sampler chain, which checks the whole
vocabulary against the grammar at every step. This measures what that costs, side by side,
against a running agent: every round asks each prompt once per variant (``plain``,
``json_object``, ``json_schema``), the variants in an order drawn at random per round and
prompt (seeded, recorded), one request at a time, streamed. Per request: the time to the first
token and the decode rate after it ((completion tokens − 1) / (last token − first token)); the
texts differ between variants, so token counts do too, and the rate per token is what compares.
The ratio variant / plain is taken per (round, prompt) pair and summarised by its median with
a percentile-bootstrap 95% interval over the pairs.

Several agents (``--target NAME=URL``, e.g. two builds on the same pinned core, one idle while
the other answers) are compared in the same run: every (agent, variant) request of a round and
prompt in one shuffled order, and each agent's rate over the first agent's, per variant and
(round, prompt), summarised the same way.

    taskset -c 1 pice edge serve --model qwen2.5-coder-1.5b-instruct --port 8191 --threads 1 &
    taskset -c 0 python benchmarks/grammar_cost.py --target agent=http://127.0.0.1:8191 \\
        --rounds 3 --out benchmarks/results/grammar_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from pice_bench.stats import bootstrap_interval

PROMPTS = (
    "Describe the city of Lyon: its country, population and two landmarks.",
    "Give a recipe for pancakes: ingredients with amounts, and the steps.",
    "Summarise the planet Mars: distance from the sun, moons, day length.",
    "List three programming languages with the year each appeared and its creator.",
    "Describe a laptop for a student: price range, weight, battery life, three models.",
    "Give the plan of a one-day trip to Rome: morning, afternoon and evening.",
    "Describe the water cycle: its stages, each with one sentence.",
    "Give three exercises for back pain with repetitions and how often.",
)
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "facts"],
}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "json_object": {"type": "json_object"},
    "json_schema": {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}},
}


@dataclass(frozen=True)
class Sample:
    round: int
    prompt: int
    target: str
    variant: str
    order: int  # position of this variant in its (round, prompt) triple
    completion_tokens: int
    ttft_ms: float
    decode_tok_s: float
    valid_json: bool


def ask(client: httpx.Client, model: str, prompt: str, fmt: Any, max_tokens: int) -> Sample:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if fmt is not None:
        body["response_format"] = fmt
    start = time.perf_counter()
    first = last = None
    text, tokens = [], 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if choice["delta"].get("content"):
                    now = time.perf_counter()
                    first = now if first is None else first
                    last = now
                    text.append(choice["delta"]["content"])
    if first is None or last is None or tokens < 2 or last <= first:
        raise RuntimeError(f"too short an answer to time: {tokens} tokens")
    try:
        json.loads("".join(text))
        valid = True
    except ValueError:
        valid = False
    rate = (tokens - 1) / (last - first)
    return Sample(0, 0, "", "", 0, tokens, (first - start) * 1000, rate, valid)


def _paired(ratios: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(ratios),
        "ci95": bootstrap_interval(ratios, statistics.median),
        "ratios": ratios,
    }


def summarise(samples: list[Sample], targets: list[str]) -> dict[str, Any]:
    """Per agent and variant: rates, and the paired ratios to plain and to the first agent."""
    by_key = {(s.round, s.prompt, s.target, s.variant): s for s in samples}
    out: dict[str, Any] = {}
    for target in targets:
        rows: dict[str, Any] = {}
        for variant in VARIANTS:
            mine = [s for s in samples if s.target == target and s.variant == variant]
            row: dict[str, Any] = {
                "n": len(mine),
                "decode_tok_s_median": statistics.median(s.decode_tok_s for s in mine),
                "ttft_ms_median": statistics.median(s.ttft_ms for s in mine),
                "tokens_mean": statistics.mean(s.completion_tokens for s in mine),
                "valid_json": sum(s.valid_json for s in mine),
            }
            if variant != "plain":
                row["to_plain"] = _paired(
                    [
                        s.decode_tok_s / by_key[(s.round, s.prompt, target, "plain")].decode_tok_s
                        for s in mine
                    ]
                )
            if target != targets[0]:
                row["to_first"] = _paired(
                    [
                        s.decode_tok_s
                        / by_key[(s.round, s.prompt, targets[0], variant)].decode_tok_s
                        for s in mine
                    ]
                )
            rows[variant] = row
        out[target] = rows
    return out


def _ratio(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "–"
    r = row[key]
    return f"{r['median']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        help="NAME=URL of an agent (repeat to compare; the first is the reference)",
    )
    parser.add_argument("--model", default=None, help="default: each agent's first model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    targets = dict(t.split("=", 1) for t in (args.target or ["agent=http://127.0.0.1:8191"]))
    rng = random.Random(args.seed)
    samples: list[Sample] = []
    clients = {name: httpx.Client(base_url=url, timeout=600) for name, url in targets.items()}
    try:
        models = {
            name: args.model or c.get("/v1/models").json()["data"][0]["id"]
            for name, c in clients.items()
        }
        for name, c in clients.items():
            ask(c, models[name], PROMPTS[0], None, 8)  # warm-up, not counted
        total = args.rounds * len(PROMPTS) * len(VARIANTS) * len(targets)
        for rnd in range(args.rounds):
            for p, prompt in enumerate(PROMPTS):
                order = [(t, v) for t in targets for v in VARIANTS]
                rng.shuffle(order)
                for position, (target, variant) in enumerate(order):
                    client, model = clients[target], models[target]
                    s = ask(client, model, prompt, VARIANTS[variant], args.max_tokens)
                    s = replace(
                        s, round=rnd, prompt=p, target=target, variant=variant, order=position
                    )
                    samples.append(s)
                    print(
                        f"[{len(samples)}/{total}] round {rnd} prompt {p} {target} "
                        f"{variant:<11} {s.completion_tokens:>3} tok  {s.decode_tok_s:5.1f} "
                        f"tok/s  ttft {s.ttft_ms:5.0f} ms  json={s.valid_json}",
                        file=sys.stderr,
                    )
    finally:
        for c in clients.values():
            c.close()
    names = list(targets)
    summary = summarise(samples, names)
    print(f"\n{args.rounds} rounds x {len(PROMPTS)} prompts, one request at a time, {models}\n")
    print(
        f"| agent | variant | n | decode tok/s (median) | / plain, paired [95% CI] "
        f"| / {names[0]}, paired [95% CI] | TTFT ms | tokens | valid JSON |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for target, rows in summary.items():
        for variant, row in rows.items():
            print(
                f"| {target} | {variant} | {row['n']} | {row['decode_tok_s_median']:.2f} | "
                f"{_ratio(row, 'to_plain')} | {_ratio(row, 'to_first')} | "
                f"{row['ttft_ms_median']:.0f} | {row['tokens_mean']:.1f} | {row['valid_json']} |"
            )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "config": {**vars(args), "out": str(args.out), "targets": targets},
                    "models": models,
                    "machine": platform.machine(),
                    "summary": summary,
                    "samples": [asdict(s) for s in samples],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
