"""What a LoRA adapter costs the edge's batched expansion: the stock edge against the same
model with the adapter applied, side by side (issue #13: within 5%; docs/fine-tuning.md).

Both are loaded in this one process, each as ``pice edge serve`` would run it (an
:class:`~edge_agent.engine.engine.Engine`, the adapter set on its context), and measured in
interleaved rounds: in every round, for every batch size, the two run back to back in an
order drawn at random (seeded, recorded), so a machine whose speed drifts slows both alike.
Per (round, size, variant) two measurements:

- ``expand``: one job of N points sharing the expansion prompt (the real prompt, stop strings
  and greedy sampling the gateway's points get; prefix cache off, so every job prefills):
  generated tokens over wall time from submit to the last token, and the time to the first
  token (the shared prefix's prefill plus the first step);
- ``decode``: bare ``llama_decode`` steps (``pice edge bench``'s ``raw-decode``): the shared
  prompt prefilled for N sequences, then a fixed number of greedy steps of N sequences. Token
  counts are identical for both variants here, whatever the adapter does to the text, so this
  is the kernels' cost alone; the prefill's time is reported too.

The ratio adapter/stock is taken per round (the pair measured back to back) and summarised by
its mean with a percentile-bootstrap 95% interval over rounds; with 5 rounds that interval is
narrow-biased, so the per-round ratios are printed as well.

Pin it to one core, one thread, at normal priority:

taskset -c 1 python benchmarks/lora_speed.py --lora tune-out/adapter.gguf --rounds 5 \
    --out benchmarks/results/lora_speed.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

VARIANTS = ("stock", "adapter")


@dataclass(frozen=True)
class Sample:
    """One variant at one batch size in one round."""

    round: int
    size: int
    variant: str
    expand_tokens: int
    expand_seconds: float
    ttft_ms: float
    decode_tokens: int
    decode_seconds: float
    prefill_ms: float  # of the bare decode's shared prompt, prefix_tokens long
    prefix_tokens: int

    @property
    def expand_tok_s(self) -> float:
        return self.expand_tokens / self.expand_seconds

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_seconds


def schedule(
    rounds: int, sizes: Sequence[int], seed: int
) -> list[tuple[int, int, tuple[str, ...]]]:
    """(round, size, order of the variants) in the order they run; the order is drawn."""
    rng = random.Random(f"lora-speed:{seed}")
    plan = []
    for r in range(rounds):
        for size in sizes:
            order = list(VARIANTS)
            rng.shuffle(order)
            plan.append((r, size, tuple(order)))
    return plan


def mean_ratio(ratios: Sequence[float]) -> float:
    return statistics.fmean(ratios) if ratios else float("nan")


def summarise(samples: Sequence[Sample], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per batch size: medians per variant, and adapter/stock per round with a 95% interval."""
    from pice_bench.stats import bootstrap_interval

    by = {(s.round, s.size, s.variant): s for s in samples}
    rows = []
    for size in sorted({s.size for s in samples}):
        pairs = [
            (by[(r, size, "stock")], by[(r, size, "adapter")])
            for r in sorted({s.round for s in samples if s.size == size})
            if (r, size, "stock") in by and (r, size, "adapter") in by
        ]
        row: dict[str, Any] = {"size": size, "rounds": len(pairs)}
        metrics: dict[str, Callable[[Sample], float]] = {
            "expand_tok_s": lambda s: s.expand_tok_s,
            "decode_tok_s": lambda s: s.decode_tok_s,
            "ttft_ms": lambda s: s.ttft_ms,
            "prefill_ms": lambda s: s.prefill_ms,
        }
        for name, value in metrics.items():
            stock = [value(a) for a, _ in pairs]
            adapted = [value(b) for _, b in pairs]
            ratios = [b / a for a, b in zip(stock, adapted, strict=True)]
            low, high = bootstrap_interval(ratios, mean_ratio, seed=seed)
            row[name] = {
                "stock_median": statistics.median(stock),
                "adapter_median": statistics.median(adapted),
                "ratio": mean_ratio(ratios),
                "ratio_ci95": [low, high],
                "ratios": ratios,
            }
        row["expand_tokens"] = {
            "stock": [a.expand_tokens for a, _ in pairs],
            "adapter": [b.expand_tokens for _, b in pairs],
        }
        rows.append(row)
    return rows


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: per batch size, tokens/s of both and the ratio, then the prefill times."""

    def ratio(m: Mapping[str, Any]) -> str:
        low, high = m["ratio_ci95"]
        return f"{m['ratio']:.3f} [{low:.3f}, {high:.3f}]"

    def spread(m: Mapping[str, Any]) -> str:
        return " ".join(f"{r:.3f}" for r in m["ratios"])

    lines = [
        "| points | measure | stock | adapter | adapter/stock [95% CI] | per round |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, label, unit in (
            ("expand_tok_s", "expansion tok/s", ".1f"),
            ("decode_tok_s", "bare decode tok/s", ".1f"),
            ("ttft_ms", "expansion TTFT ms", ".0f"),
            ("prefill_ms", "prompt prefill ms", ".0f"),
        ):
            m = row[name]
            lines.append(
                f"| {row['size']} | {label} | {m['stock_median']:{unit}} | "
                f"{m['adapter_median']:{unit}} | {ratio(m)} | {spread(m)} |"
            )
    return "\n".join(lines)


# -- measuring (loads llama.cpp) -------------------------------------------------------------


async def _measure(args: argparse.Namespace, adapter_path: Path) -> list[Sample]:
    from edge_agent.bench import QUESTION, SKETCH, Adapter, RawDecoder, expand_config, run_job
    from edge_agent.engine.engine import Engine
    from edge_agent.prompts import expansion_messages
    from pice.models.registry import resolve_model

    sizes = [int(s) for s in args.points.split(",") if s]
    path = resolve_model(args.model, progress=False).path
    adapters: dict[str, Adapter | None] = {
        "stock": None,
        "adapter": Adapter(adapter_path, args.lora_scale),
    }
    engines = {v: Engine(path, expand_config(args.threads, sizes, a)) for v, a in adapters.items()}
    decoders: dict[str, RawDecoder] = {}
    try:
        for engine in engines.values():
            engine.start()
        for v, a in adapters.items():
            decoders[v] = RawDecoder(path, args.threads, max(sizes), adapter=a)
        prompts = {
            v: e.chat.render(expansion_messages(QUESTION, SKETCH)) for v, e in engines.items()
        }
        # One untimed job and decode each: first-touch of the weights and the adapter's tensors.
        for v, engine in engines.items():
            await run_job(engine, prompts[v].text, prompts[v].add_special, [0], 4, 0.0)
            decoders[v].seconds(1, 2)
        samples: list[Sample] = []
        for r, size, order in schedule(args.rounds, sizes, args.seed):
            pair: dict[str, Sample] = {}
            for v in order:
                prompt = prompts[v]
                t0 = time.monotonic()
                tokens, ttfts = await run_job(
                    engines[v], prompt.text, prompt.add_special, list(range(size)),
                    args.max_tokens, t0,
                )  # fmt: skip
                expand_seconds = time.monotonic() - t0
                decode_seconds = decoders[v].seconds(size, args.steps)
                prefill_ms = decoders[v].prefix_tokens / decoders[v].prefill_rate * 1000.0
                pair[v] = Sample(
                    r, size, v, tokens, expand_seconds, min(ttfts),
                    args.steps * size, decode_seconds, prefill_ms, decoders[v].prefix_tokens,
                )  # fmt: skip
            samples += pair.values()
            stock, adapted = pair["stock"], pair["adapter"]
            print(
                f"round {r + 1}/{args.rounds} {size} points ({'/'.join(order)}): expansion "
                f"{stock.expand_tok_s:.1f} vs {adapted.expand_tok_s:.1f} tok/s, decode "
                f"{stock.decode_tok_s:.1f} vs {adapted.decode_tok_s:.1f} tok/s",
                file=sys.stderr,
                flush=True,
            )
        return samples
    finally:
        for decoder in decoders.values():
            decoder.close()
        for engine in engines.values():
            engine.stop()


def adapter_facts(path: Path) -> dict[str, Any]:
    """The adapter's size, hash and, from ``pice tune export``'s record beside it, its recipe."""
    from pice.models.provision import hash_file

    facts: dict[str, Any] = {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": hash_file(path),
    }
    record = path.with_name(path.name + ".json")
    if record.is_file():
        meta = json.loads(record.read_text())
        facts["recipe"] = meta.get("recipe")
        facts["training_steps"] = (meta.get("training") or {}).get("steps")
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    from edge_agent.settings import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lora", type=Path, required=True, help="adapter GGUF (pice tune export)")
    parser.add_argument("--lora-scale", dest="lora_scale", type=float, default=1.0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or path")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1)")
    parser.add_argument("--points", default="1,4,8", help="batch sizes (the gateway's: 1,4,8)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48, help="per point (48)")
    parser.add_argument("--steps", type=int, default=32, help="bare decode steps (32)")
    parser.add_argument("--seed", type=int, default=0, help="draws the order of each pair")
    parser.add_argument("--out", type=Path, help="write samples and summary as JSON here")
    args = parser.parse_args(argv)
    if not args.lora.is_file():
        parser.error(f"no adapter at {args.lora}")

    started = time.monotonic()
    samples = asyncio.run(_measure(args, args.lora))
    rows = summarise(samples, seed=args.seed)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(
        f"\n{args.model}, {args.threads} thread(s), CPUs {affinity}, {args.rounds} rounds; "
        f"stock vs adapter {args.lora.name} at scale {args.lora_scale}; "
        "medians, and the mean of per-round ratios\n"
    )
    print(table(rows))
    if args.out:
        payload = {
            "model": args.model,
            "adapter": adapter_facts(args.lora) | {"scale": args.lora_scale},
            "threads": args.threads,
            "cpu_affinity": affinity,
            "machine": platform.machine(),
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "decode_steps": args.steps,
            "seed": args.seed,
            "wall_seconds": time.monotonic() - started,
            "summary": rows,
            "samples": [asdict(s) for s in samples],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
