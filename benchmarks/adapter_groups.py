"""What serving named adapters (``--lora-module``) costs a decode step: one adapter group active
vs two, on the real edge model and the real batcher.

llama.cpp applies adapters per context, so a step with sequences of two adapters is two
``llama_decode`` calls (edge_agent/engine/batcher.py). Per round, in a drawn order, three
variants decode the same number of sequences (``--sequences``, 8 by default) to steady state and
then time ``--steps`` decode steps (``Batcher.step``: building the batch, the decode(s) and the
sampling, exactly what the engine thread does):

- ``base``: every sequence on the base model: one group, one decode per step (today's path);
- ``adapter``: every sequence on the named adapter: one group, one decode per step (the
  adapter's own cost, selected once);
- ``mixed``: half base, half adapter: two groups, two decodes per step, the adapter selected
  and cleared around every step's decodes.

Each sequence is its own chat job (the benchmark's chat questions) with greedy sampling and the
end-of-generation token ignored, so every variant decodes the same number of tokens; the prefix
cache is off. Reported per variant: the median step time and tokens per second over the timed
steps, and the ratio to ``base`` per round.

Pin it to one core and one thread (nice -n 19 when the machine is shared, and say so):

taskset -c 1 nice -n 19 python benchmarks/adapter_groups.py --adapter tuned.gguf \
    --out benchmarks/results/adapter_groups.json

An adapter: ``pice tune export``, or a random one for speed only
(``tests/support/random_lora.py --rank 4`` then ``src/pice_tune/worker.py export``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VARIANTS = ("base", "adapter", "mixed")
ADAPTER = "tuned"


@dataclass(frozen=True)
class Sample:
    round: int
    variant: str
    step_ms: list[float]
    sequences: int
    decodes_per_step: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.step_ms)

    @property
    def tok_s(self) -> float:
        return self.sequences * len(self.step_ms) / (sum(self.step_ms) / 1000.0)


class _NoEog:
    """The model with end-of-generation ignored: every sequence decodes the same steps."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def is_eog(self, token: int) -> bool:
        return False


def run_variant(
    ctx: Any, renderer: Any, variant: str, sequences: int, steps: int, round_: int
) -> Sample:
    from edge_agent.bench import CHAT_QUESTIONS
    from edge_agent.engine.admission import CellBudget
    from edge_agent.engine.batcher import Batcher
    from edge_agent.engine.chat_template import Message
    from edge_agent.engine.job import build_job
    from edge_agent.engine.sampling import Sampler
    from edge_agent.engine.types import JobSpec, SamplingParams, SequenceSpec

    ctx.clear()
    batcher = Batcher(
        ctx,
        CellBudget(ctx.n_ctx, sequences),
        512,
        new_sampler=functools.partial(Sampler, n_vocab=ctx.model.n_vocab),
    )
    batcher.model = _NoEog(ctx.model)
    try:
        for i in range(sequences):
            adapter = {"base": None, "adapter": ADAPTER}.get(variant)
            if variant == "mixed":
                adapter = ADAPTER if i % 2 else None
            question = CHAT_QUESTIONS[(i + round_) % len(CHAT_QUESTIONS)]
            prompt = renderer.render([Message("user", question)])
            params = SamplingParams(max_tokens=steps + 64)
            spec = JobSpec(prompt.text, (SequenceSpec("", params),), adapter=adapter)
            batcher.enqueue(build_job(batcher.model, batcher.budget, spec, lambda _e: None))
        batcher.admit()
        # Prefill, until every sequence has its first token and the step is pure decoding.
        while not all(s.pending is not None for j in batcher.running for s in j.sequences):
            batcher.step()
        decodes_before = len(ctx.decodes)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            assert batcher.step()
            times.append((time.perf_counter() - started) * 1000.0)
        decodes = (len(ctx.decodes) - decodes_before) / steps
        for job in list(batcher.running):
            job.cancelled = True
        batcher.reap_cancelled()
        return Sample(round_, variant, times, sequences, decodes)
    finally:
        batcher.batch.close()


class CountingContext:
    """The context, counting ``llama_decode`` calls (how many groups a step decoded)."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.decodes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def decode(self, batch: Any) -> int:
        self.decodes.append(batch.n_tokens)
        return int(self._ctx.decode(batch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, required=True, help="LoRA adapter GGUF")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q8_0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from edge_agent.engine.chat_template import ChatRenderer
    from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel
    from pice.models.registry import resolve_model

    resolved = resolve_model(args.model, progress=False)
    model = LlamaModel(resolved.path)
    raw = LlamaContext(model, ContextConfig(4096, 512, args.sequences, args.threads))
    raw.add_named_adapter(ADAPTER, model.load_adapter(args.adapter), 1.0)
    ctx = CountingContext(raw)
    renderer = ChatRenderer.from_model(model)
    rng = random.Random(f"adapter-groups:{args.seed}")
    samples: list[Sample] = []
    # One unmeasured pass of each variant: first-use costs (graph allocation) out of the way.
    for variant in VARIANTS:
        run_variant(ctx, renderer, variant, args.sequences, 4, -1)
    for r in range(args.rounds):
        order = list(VARIANTS)
        rng.shuffle(order)
        for variant in order:
            samples.append(run_variant(ctx, renderer, variant, args.sequences, args.steps, r))
    raw.close()
    model.close()

    rows = []
    for variant in VARIANTS:
        mine = [s for s in samples if s.variant == variant]
        ratios = []
        for s in mine:
            [base] = [b for b in samples if b.variant == "base" and b.round == s.round]
            ratios.append(s.median_ms / base.median_ms)
        rows.append(
            {
                "variant": variant,
                "decodes_per_step": mine[0].decodes_per_step,
                "step_ms_median": statistics.median(s.median_ms for s in mine),
                "tok_s_median": statistics.median(s.tok_s for s in mine),
                "step_ratio_to_base": statistics.fmean(ratios),
                "step_ratios": ratios,
            }
        )
    out = sys.stdout
    out.write(
        f"{args.sequences} sequences, {args.steps} timed steps x {args.rounds} rounds, "
        f"{args.threads} thread(s), model {resolved.name}\n"
    )
    out.write(f"{'variant':<9} {'decodes/step':>12} {'step ms':>8} {'tok/s':>7} {'x base':>7}\n")
    for row in rows:
        out.write(
            f"{row['variant']:<9} {row['decodes_per_step']:>12.1f} {row['step_ms_median']:>8.1f} "
            f"{row['tok_s_median']:>7.1f} {row['step_ratio_to_base']:>7.2f}\n"
        )
    if args.out:
        report = {
            "benchmark": "adapter_groups",
            "model": resolved.name,
            "adapter": str(args.adapter),
            "sequences": args.sequences,
            "steps": args.steps,
            "rounds": args.rounds,
            "threads": args.threads,
            "seed": args.seed,
            "affinity": sorted(os.sched_getaffinity(0)),
            "niceness": os.nice(0),
            "machine": platform.processor() or platform.machine(),
            "rows": rows,
            "samples": [s.__dict__ for s in samples],
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
