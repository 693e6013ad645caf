"""The router's decision time on one core: the pinned encoder file vs the quantised one.

What is timed is what the gateway does per ``pice`` request, in one thread: ``route_text``
(pick the last user message), the encoder's ``embed`` (tokenize, onnxruntime run with one
intra-op thread, pooling) and the head's ``decide``. The same stages are also timed apart
(tokenizer alone, head alone) to show where the time goes.

Variants, compared side by side in the same process, interleaved per conversation (the order
alternates) so a change in the machine's load hits all alike:
- ``source``: the pinned file as it is (int8 storage, float32 matrix products at run time);
- ``quantised``: the file the router runs (``router/quantize.py``: int8 matrix products).
Both use this checkout's encoder code and the final head (the head costs the same either way).
When the weights (``--weights``, default the shipped ones) hold early exits, a variant
``early-exit`` runs what the gateway runs: the quantised graph cut at the exit blocks, stopping
at the first sure exit head; the table then gives its p50 over ``quantised``'s per round and
where its decisions were made.
``--candidate LORA.npz`` and/or ``--candidate-layers N`` add a variant, the graph derived
with those factors and only the encoder's first N blocks (the final head again: only its
time is of interest), and print its p50 over the shipped graph's per round.

Conversations: by default (``--questions training``) the router's own training and development
questions (never the held-out sets); ``--questions untrained``: the development and held-out
questions, which no head was fitted on (early exits are easier on questions a head was fitted
on, so their figure there is optimistic). Each made into a chat of one of three shapes, chosen
at random with a fixed seed: the
question alone; a system prompt and the question; a system prompt, an earlier exchange and the
question. One in ten last messages also carries a pasted block of earlier text before the
question (several hundred tokens), so the 128-token truncation is exercised. A warm-up pass over
the first ``--warmup`` conversations per variant is not timed. Each of ``--rounds`` rounds
times every conversation once per variant (in a fresh shuffled order); the table gives each
round's p50 and the spread over rounds. Prints a table and writes JSON.

Pin it to one core at normal priority (the figure the issue asks for is "on one core"):

taskset -c 1 python benchmarks/router_latency.py --rounds 3 \
    --out benchmarks/results/router_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from pice.models.assets import provision_asset
from pice.models.registry import default_cache_dir
from pice.openai_protocol import ChatMessage
from pice_gateway.router.assets import (
    ENCODER_LORA,
    ENCODER_ONNX,
    EncoderFiles,
    provision_encoder,
)
from pice_gateway.router.encoder import SentenceEncoder, configure_tokenizer
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights, route_text
from pice_gateway.router.quantize import quantize_encoder
from pice_gateway.router.training import DATA_DIR, load_examples

SYSTEM = "You are a helpful assistant. Answer clearly and accurately."
HELDOUT = Path(__file__).with_name("router") / "heldout.jsonl"


def conversations(questions: Sequence[str], seed: int) -> list[list[ChatMessage]]:
    rng = random.Random(seed)
    chats = []
    for question in questions:
        last = question
        if rng.random() < 0.1:
            pasted = " ".join(rng.sample(list(questions), 12))
            last = f"Here is what I wrote earlier:\n\n{pasted}\n\nNow: {question}"
        shape = rng.randrange(3)
        chat = [ChatMessage(role="system", content=SYSTEM)] if shape else []
        if shape == 2:
            earlier = rng.choice(questions)
            chat += [
                ChatMessage(role="user", content=earlier),
                ChatMessage(role="assistant", content="Here is my answer to that. " * 20),
            ]
        chats.append([*chat, ChatMessage(role="user", content=last)])
    return chats


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def timed(fn: Callable[..., object], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--candidate",
        type=Path,
        help="a third variant: the encoder derived with these LoRA factors",
    )
    parser.add_argument(
        "--candidate-layers", type=int, help="... and only its first N blocks (router-layers)"
    )
    parser.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS, help="router weights")
    parser.add_argument("--questions", choices=("training", "untrained"), default="training")
    args = parser.parse_args(argv)

    cache = args.cache_dir or default_cache_dir()
    files = provision_encoder(cache, pull=False)
    source = provision_asset(ENCODER_ONNX, cache, pull=False)
    encoders = {
        "source": SentenceEncoder(EncoderFiles(source, files.tokenizer)),
        "quantised": SentenceEncoder(files),
    }
    candidate_lora = args.candidate or ENCODER_LORA
    if args.candidate is not None or args.candidate_layers is not None:
        # The session holds the graph once built: the file is not needed after.
        with tempfile.TemporaryDirectory(prefix="pice-router-latency-") as scratch:
            graph = Path(scratch) / "candidate.onnx"
            quantize_encoder(source, graph, candidate_lora, layers=args.candidate_layers)
            encoders["candidate"] = SentenceEncoder(EncoderFiles(graph, files.tokenizer))
    staged = RouterWeights.load(args.weights)
    weights = replace(staged, exits=())  # the final head alone
    if staged.exits:
        cut = provision_encoder(cache, pull=False, exits=staged.exit_blocks)
        encoders["early-exit"] = SentenceEncoder(cut)
    tokenizer = configure_tokenizer(Tokenizer.from_file(str(files.tokenizer)))
    sources = {
        "training": [DATA_DIR / "train.jsonl", DATA_DIR / "dev.jsonl"],
        "untrained": [DATA_DIR / "dev.jsonl", HELDOUT],
    }[args.questions]
    questions = [e.question for path in sources for e in load_examples(path)]
    random.Random(args.seed).shuffle(questions)
    chats = conversations(questions[: args.conversations], args.seed)
    texts = [route_text(chat) for chat in chats]
    tokens = [len(tokenizer.encode(t).ids) for t in texts]

    exited: dict[str, int] = {}

    def decide(name: str, chat: list[ChatMessage]) -> None:
        if name == "early-exit":
            decision = staged.decide_staged(encoders[name].embed_stages(route_text(chat)))
            exited[decision.decided_at] = exited.get(decision.decided_at, 0) + 1
        else:
            weights.decide(encoders[name].embed(route_text(chat)))

    for chat in chats[: args.warmup]:
        for name in encoders:
            decide(name, chat)

    exited.clear()  # count where the timed decisions were made, not the warm-up's
    names = list(encoders)
    rounds: list[dict[str, list[float]]] = []
    stages: dict[str, list[float]] = {"route_text": [], "tokenize": [], "head": []}
    embedding = encoders["quantised"].embed("warm-up")
    rng = random.Random(args.seed + 1)
    for _ in range(args.rounds):
        times: dict[str, list[float]] = {name: [] for name in names}
        order = list(range(len(chats)))
        rng.shuffle(order)
        for n, i in enumerate(order):
            for name in names if n % 2 == 0 else reversed(names):
                times[name].append(timed(decide, name, chats[i]))
            stages["route_text"].append(timed(route_text, chats[i]))
            stages["tokenize"].append(timed(tokenizer.encode, texts[i]))
            stages["head"].append(timed(weights.decide, embedding))
        rounds.append(times)

    summary: dict[str, Any] = {}
    for name in names:
        per_round = [percentiles(r[name]) for r in rounds]
        p50s = [p["p50"] for p in per_round]
        summary[name] = {
            "rounds": per_round,
            "p50_median": statistics.median(p50s),
            "p50_spread": [min(p50s), max(p50s)],
            "all": percentiles([t for r in rounds for t in r[name]]),
        }
    ratios = [statistics.median(r["quantised"]) / statistics.median(r["source"]) for r in rounds]

    def over_quantised(name: str) -> list[float]:
        """A variant's p50 over the shipped graph's, per round (empty if it was not timed)."""
        return [
            statistics.median(r[name]) / statistics.median(r["quantised"])
            for r in rounds
            if name in r
        ]

    candidate, early = over_quantised("candidate"), over_quantised("early-exit")
    affinity = sorted(os.sched_getaffinity(0))
    print(
        f"router decision, {len(chats)} conversations x {args.rounds} rounds, "
        f"CPUs {affinity}, nice {os.nice(0)}, onnxruntime {onnxruntime.__version__}, "
        f"tokens p50 {statistics.median(tokens):.0f} / max {max(tokens)}"
    )
    print("| variant | p50 ms (rounds) | p50 spread | p95 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name in names:
        s = summary[name]
        rounds_p50 = " / ".join(f"{p['p50']:.2f}" for p in s["rounds"])
        lo, hi = s["p50_spread"]
        print(
            f"| {name} | {rounds_p50} | {lo:.2f}–{hi:.2f} | {s['all']['p95']:.2f} | "
            f"{s['all']['p99']:.2f} |"
        )
    print("quantised / source p50 per round: " + " / ".join(f"{r:.2f}" for r in ratios))
    if candidate:
        print("candidate / quantised p50 per round: " + " / ".join(f"{r:.2f}" for r in candidate))
    if early:
        print("early-exit / quantised p50 per round: " + " / ".join(f"{r:.2f}" for r in early))
        total = sum(exited.values())
        print(
            "early-exit decided at: "
            + ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(exited.items()))
        )
    stage_p50 = {k: statistics.median(v) for k, v in stages.items()}
    print(
        "stages p50 ms: "
        + ", ".join(f"{k} {v:.3f}" for k, v in stage_p50.items())
        + " (the rest of a decision is the onnxruntime run and pooling)"
    )
    if args.out:
        result = {
            "conversations": len(chats),
            "rounds": args.rounds,
            "cpus": affinity,
            "nice": os.nice(0),
            "machine": platform.machine(),
            "onnxruntime": onnxruntime.__version__,
            "tokens": {"p50": statistics.median(tokens), "max": max(tokens)},
            "variants": summary,
            "ratio_p50_per_round": ratios,
            "stages_p50_ms": stage_p50,
        }
        result["weights"] = {"path": str(args.weights), "version": staged.version}
        result["questions"] = args.questions
        if early:
            result["early_exit"] = {
                "exit_blocks": list(staged.exit_blocks),
                "exit_confidence": staged.exit_confidence,
                "ratio_to_quantised_p50_per_round": early,
                "decided_at": dict(sorted(exited.items())),
            }
        if candidate:
            result["candidate"] = {
                "lora": str(candidate_lora),
                "layers": args.candidate_layers,
                "ratio_to_quantised_p50_per_round": candidate,
            }
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
