"""What a LoRA adapter costs the edge's batched expansion: the stock edge against the same
model with the adapter applied, side by side (issue #13: within 5%; docs/fine-tuning.md).

Both are loaded in this one process, each as ``pice edge serve`` would run it (an
:class:`~edge_agent.engine.engine.Engine`, the adapter set on its context), and measured in
interleaved rounds: in every round, for every batch size, the variants run back to back in an
order drawn at random (seeded, recorded), so a machine whose speed drifts slows all alike.
``--merged FILE`` adds a third variant: the adapter merged into the model's weights
(``pice tune export --merged``), served as a plain model. Per (round, size, variant):

- ``expand``: one job of N points sharing the expansion prompt (the real prompt and greedy
  sampling; prefix cache off, so every job prefills): generated tokens over wall time from
  submit to the last token, the same after the first token, and the time to the first token
  (the shared prefix's prefill plus the first step). Every point runs to exactly
  ``--max-tokens``: the end-of-generation token is ignored and the points' stop strings left
  out, because an adapter changes the text, and with the gateway's stops
  (``--gateway-stops``) two variants decode different numbers of tokens in batches that
  shrink at different times, which measures their texts rather than their speed;
- ``decode``: bare ``llama_decode`` steps (``pice edge bench``'s ``raw-decode``): the shared
  prompt prefilled for N sequences, then a fixed number of greedy steps of N sequences. Token
  counts are identical for every variant here, so this is the kernels' cost alone; the
  prefill's time is reported too.

The ratio variant/stock is taken per round (the pair measured in the same round) and
summarised by its mean with a percentile-bootstrap 95% interval over rounds; with 5 rounds
that interval is narrow-biased, so the per-round ratios are printed as well.

Pin it to one core, one thread, at normal priority:

taskset -c 1 python benchmarks/lora_speed.py --lora tune-out/adapter.gguf --rounds 5 \
    [--merged tune-out/merged.gguf] --out benchmarks/results/lora_speed.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

STOCK = "stock"
# Measures per sample: (key, label in the table, number format).
MEASURES = (
    ("expand_tok_s", "expansion tok/s", ".1f"),
    ("expand_after_first_tok_s", "expansion tok/s after 1st token", ".1f"),
    ("decode_tok_s", "bare decode tok/s", ".1f"),
    ("ttft_ms", "expansion TTFT ms", ".0f"),
    ("prefill_ms", "prompt prefill ms", ".0f"),
)


@dataclass(frozen=True)
class Sample:
    """One variant at one batch size in one round."""

    round: int
    size: int
    variant: str
    expand_tokens: int
    expand_seconds: float
    ttft_ms: float  # the job's first token, from submit
    decode_tokens: int
    decode_seconds: float
    prefill_ms: float  # of the bare decode's shared prompt, prefix_tokens long
    prefix_tokens: int

    @property
    def expand_tok_s(self) -> float:
        """The job's tokens over its wall time, prefill included (``pice edge bench``'s)."""
        return self.expand_tokens / self.expand_seconds

    @property
    def expand_after_first_tok_s(self) -> float:
        """Tokens after each point's first over the time after the job's first token."""
        return (self.expand_tokens - self.size) / (self.expand_seconds - self.ttft_ms / 1000.0)

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_seconds

    def measure(self, key: str) -> float:
        return float(getattr(self, key))


def schedule(
    rounds: int, sizes: Sequence[int], seed: int, variants: Sequence[str] = (STOCK, "adapter")
) -> list[tuple[int, int, tuple[str, ...]]]:
    """(round, size, order of the variants) in the order they run; the order is drawn."""
    rng = random.Random(f"lora-speed:{seed}")
    plan = []
    for r in range(rounds):
        for size in sizes:
            order = list(variants)
            rng.shuffle(order)
            plan.append((r, size, tuple(order)))
    return plan


def mean_ratio(ratios: Sequence[float]) -> float:
    return statistics.fmean(ratios) if ratios else float("nan")


def summarise(samples: Sequence[Sample], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per batch size and variant other than the stock model: medians of both, and the
    variant/stock ratio per round (the two measured back to back) with a 95% interval."""
    from pice_bench.stats import bootstrap_interval

    by = {(s.round, s.size, s.variant): s for s in samples}
    variants = sorted({s.variant for s in samples} - {STOCK})
    rows = []
    for size in sorted({s.size for s in samples}):
        for variant in variants:
            pairs = [
                (by[(r, size, STOCK)], by[(r, size, variant)])
                for r in sorted({s.round for s in samples if s.size == size})
                if (r, size, STOCK) in by and (r, size, variant) in by
            ]
            row: dict[str, Any] = {"size": size, "variant": variant, "rounds": len(pairs)}
            for key, _, _ in MEASURES:
                stock = [a.measure(key) for a, _ in pairs]
                other = [b.measure(key) for _, b in pairs]
                ratios = [b / a for a, b in zip(stock, other, strict=True)]
                low, high = bootstrap_interval(ratios, mean_ratio, seed=seed)
                row[key] = {
                    "stock_median": statistics.median(stock),
                    "variant_median": statistics.median(other),
                    "ratio": mean_ratio(ratios),
                    "ratio_ci95": [low, high],
                    "ratios": ratios,
                }
            row["expand_tokens"] = {
                STOCK: [a.expand_tokens for a, _ in pairs],
                variant: [b.expand_tokens for _, b in pairs],
            }
            rows.append(row)
    return rows


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: per batch size and variant, each measure for both and the ratio."""

    def ratio(m: Mapping[str, Any]) -> str:
        low, high = m["ratio_ci95"]
        return f"{m['ratio']:.3f} [{low:.3f}, {high:.3f}]"

    def spread(m: Mapping[str, Any]) -> str:
        return " ".join(f"{r:.3f}" for r in m["ratios"])

    lines = [
        "| points | measure | stock | variant | variant | variant/stock [95% CI] | per round |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for key, label, unit in MEASURES:
            m = row[key]
            lines.append(
                f"| {row['size']} | {label} | {m['stock_median']:{unit}} | {row['variant']} | "
                f"{m['variant_median']:{unit}} | {ratio(m)} | {spread(m)} |"
            )
    return "\n".join(lines)


# -- measuring (loads llama.cpp) -------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One edge under test: a model file and, for ``adapter``, the LoRA set on its context."""

    name: str
    model: Path
    lora: Path | None = None
    lora_scale: float = 1.0


async def _measure(args: argparse.Namespace, variants: Sequence[Variant]) -> list[Sample]:
    from edge_agent.bench import QUESTION, SKETCH, Adapter, RawDecoder, expand_config, run_job
    from edge_agent.engine.engine import Engine
    from edge_agent.prompts import expansion_messages

    sizes = [int(s) for s in args.points.split(",") if s]
    adapters = {v.name: Adapter(v.lora, v.lora_scale) if v.lora else None for v in variants}
    engines = {
        v.name: Engine(v.model, expand_config(args.threads, sizes, adapters[v.name]))
        for v in variants
    }
    decoders: dict[str, RawDecoder] = {}
    stack = contextlib.ExitStack()
    try:
        for v in variants:
            engines[v.name].start()
            decoders[v.name] = RawDecoder(
                v.model, args.threads, max(sizes), adapter=adapters[v.name]
            )
        prompts = {
            name: e.chat.render(expansion_messages(QUESTION, SKETCH)) for name, e in engines.items()
        }
        stops = args.gateway_stops

        async def expand(name: str, size: int, max_tokens: int, t0: float) -> tuple[int, float]:
            prompt = prompts[name]
            tokens, ttfts = await run_job(
                engines[name], prompt.text, prompt.add_special, list(range(size)), max_tokens, t0,
                stops=stops,
            )  # fmt: skip
            return tokens, min(ttfts)

        # One untimed job and decode each: first-touch of the weights and the adapter's tensors.
        for v in variants:
            await expand(v.name, 1, 4, 0.0)
            decoders[v.name].seconds(1, 2)
        samples: list[Sample] = []
        if not stops:
            # Every point decodes exactly max_tokens (see the module's docstring). A patch, not
            # an engine option: serving must always end at the model's end of generation.
            from edge_agent.engine.llama import LlamaModel

            stack.enter_context(patch.object(LlamaModel, "is_eog", lambda _self, _token: False))
        names = [v.name for v in variants]
        for r, size, order in schedule(args.rounds, sizes, args.seed, names):
            done: dict[str, Sample] = {}
            for name in order:
                t0 = time.monotonic()
                tokens, ttft_ms = await expand(name, size, args.max_tokens, t0)
                expand_seconds = time.monotonic() - t0
                decoder = decoders[name]
                decode_seconds = decoder.seconds(size, args.steps)
                prefill_ms = decoder.prefix_tokens / decoder.prefill_rate * 1000.0
                done[name] = Sample(
                    r, size, name, tokens, expand_seconds, ttft_ms,
                    args.steps * size, decode_seconds, prefill_ms, decoder.prefix_tokens,
                )  # fmt: skip
            samples += done.values()
            print(
                f"round {r + 1}/{args.rounds} {size} points, expansion/bare decode tok/s: "
                + ", ".join(
                    f"{n} {done[n].expand_tok_s:.1f}/{done[n].decode_tok_s:.1f}" for n in order
                ),
                file=sys.stderr,
                flush=True,
            )
        return samples
    finally:
        stack.close()
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
    parser.add_argument(
        "--merged",
        type=Path,
        help="also measure this GGUF (the adapter merged into the model) as variant 'merged'",
    )
    parser.add_argument(
        "--gateway-stops",
        action="store_true",
        help="end points at the model's end of generation and the gateway's stop strings (the "
        "variants then write different lengths); by default every point runs to --max-tokens",
    )
    parser.add_argument("--seed", type=int, default=0, help="draws the order of each pair")
    parser.add_argument("--out", type=Path, help="write samples and summary as JSON here")
    args = parser.parse_args(argv)
    if not args.lora.is_file():
        parser.error(f"no adapter at {args.lora}")
    if args.merged and not args.merged.is_file():
        parser.error(f"no merged model at {args.merged}")

    from pice.models.registry import resolve_model

    model = resolve_model(args.model, progress=False).path
    variants = [
        Variant(STOCK, model),
        Variant("adapter", model, args.lora, args.lora_scale),
        *([Variant("merged", args.merged)] if args.merged else []),
    ]
    started = time.monotonic()
    samples = asyncio.run(_measure(args, variants))
    rows = summarise(samples, seed=args.seed)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(
        f"\n{args.model}, {args.threads} thread(s), CPUs {affinity}, {args.rounds} rounds; "
        f"stock vs adapter {args.lora.name} at scale {args.lora_scale}"
        f"{f' and merged {args.merged.name}' if args.merged else ''}; points "
        f"{'end at the gateway stops' if args.gateway_stops else f'of {args.max_tokens} tokens'}; "
        "medians, and the mean of per-round ratios\n"
    )
    print(table(rows))
    if args.out:
        payload = {
            "model": args.model,
            "adapter": adapter_facts(args.lora) | {"scale": args.lora_scale},
            "merged": adapter_facts(args.merged) if args.merged else None,
            "gateway_stops": args.gateway_stops,
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
