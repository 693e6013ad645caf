"""What llama.cpp's extra weight buffers are worth on this CPU, to choose the AMX fix.

The AMX crash (docs/models.md) can be avoided by turning every extra weight buffer off
(``use_extra_bufts = False``) or by leaving only AMX out (the project's build and load-time
guard). This measures the difference between the two on each bundled model, loaded both ways
at once and measured in interleaved rounds (medians): bare ``llama_decode`` tokens/s with 1 and
with 8 sequences per step over the expansion prompt, and prefill tokens/s over that prompt.

python benchmarks/extra_buffers.py --threads 2 --rounds 3 \
    --out benchmarks/results/extra_buffers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bench import QUESTION, SKETCH
from edge_agent.engine.chat_template import ChatRenderer
from edge_agent.engine.llama import (
    ContextConfig,
    LlamaContext,
    LlamaModel,
    TokenBatch,
    system_info,
)
from edge_agent.prompts import expansion_messages
from pice.models.registry import resolve_model

MODELS = (
    "qwen2.5-coder-0.5b-instruct-q8_0",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)


class Decoder:
    """One model loaded with or without extra buffers: prefill and decode timings."""

    def __init__(self, path: Path, threads: int, extra_buffers: bool) -> None:
        self.model = LlamaModel(path, extra_buffers=extra_buffers)
        self.ctx = LlamaContext(self.model, ContextConfig(4096, 512, 8, threads))
        self.batch = TokenBatch(512, 8)
        prompt = ChatRenderer.from_model(self.model).render(expansion_messages(QUESTION, SKETCH))
        self.prefix = self.model.tokenize(
            prompt.text, add_special=prompt.add_special, parse_special=True
        )

    def measure(self, sequences: int, steps: int) -> tuple[float, float]:
        """(prefill tok/s, decode tok/s) for ``sequences`` sequences after the shared prompt."""
        ctx, batch, prefix = self.ctx, self.batch, self.prefix
        ctx.clear()
        batch.clear()
        ids = tuple(range(sequences))
        for pos, token in enumerate(prefix):
            batch.add(token, pos, ids, logits=pos == len(prefix) - 1)
        t0 = time.monotonic()
        if ctx.decode(batch) != 0:
            raise RuntimeError("llama_decode failed on the prefix")
        prefill = len(prefix) / (time.monotonic() - t0)
        last = [int(np.argmax(ctx.logits(batch.n_tokens - 1)))] * sequences
        t0 = time.monotonic()
        for step in range(steps):
            batch.clear()
            for seq in range(sequences):
                batch.add(last[seq], len(prefix) + step, (seq,), logits=True)
            if ctx.decode(batch) != 0:
                raise RuntimeError("llama_decode failed")
            last = [int(np.argmax(ctx.logits(seq))) for seq in range(sequences)]
        return prefill, steps * sequences / (time.monotonic() - t0)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()


def measure_model(name: str, threads: int, rounds: int, steps: int) -> dict[str, Any]:
    path = resolve_model(name, progress=False).path
    decoders = {"on": Decoder(path, threads, True), "off": Decoder(path, threads, False)}
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"prefill": [], "decode_1": [], "decode_8": []} for mode in decoders
    }
    try:
        for r in range(rounds):
            order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
            for mode in order:
                prefill, one = decoders[mode].measure(1, steps)
                _, eight = decoders[mode].measure(8, steps)
                samples[mode]["prefill"].append(prefill)
                samples[mode]["decode_1"].append(one)
                samples[mode]["decode_8"].append(eight)
                print(
                    f"  {name} round {r + 1} extra buffers {mode:3}: prefill {prefill:6.1f}, "
                    f"1 seq {one:5.1f}, 8 seqs {eight:5.1f} tok/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for decoder in decoders.values():
            decoder.close()
    medians = {
        mode: {k: statistics.median(v) for k, v in figures.items()}
        for mode, figures in samples.items()
    }
    return {"model": name, "rounds": samples, "median": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    info = system_info()
    print(f"llama.cpp: {info}", file=sys.stderr)
    results = [
        measure_model(m, args.threads, args.rounds, args.steps) for m in args.models.split(",")
    ]
    print("\n| model | figure (tok/s) | extra buffers on | off | on/off |\n|---|---|---|---|---|")
    for result in results:
        on, off = result["median"]["on"], result["median"]["off"]
        for figure in ("prefill", "decode_1", "decode_8"):
            print(
                f"| {result['model']} | {figure} | {on[figure]:.1f} | {off[figure]:.1f} | "
                f"{on[figure] / off[figure]:.2f}x |"
            )
    if args.out:
        payload = {"system_info": info, "threads": args.threads, "results": results}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
