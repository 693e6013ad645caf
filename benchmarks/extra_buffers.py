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
from pathlib import Path
from typing import Any

from edge_agent.bench import RawDecoder
from edge_agent.engine.llama import system_info
from pice.models.registry import resolve_model

MODELS = (
    "qwen2.5-coder-0.5b-instruct-q8_0",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)


def measure(decoder: RawDecoder, sequences: int, steps: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) for ``sequences`` sequences after the shared prompt."""
    seconds = decoder.seconds(sequences, steps)
    return decoder.prefill_rate, steps * sequences / seconds


def measure_model(name: str, threads: int, rounds: int, steps: int) -> dict[str, Any]:
    path = resolve_model(name, progress=False).path
    decoders = {
        mode: RawDecoder(path, threads, 8, extra_buffers=mode == "on") for mode in ("on", "off")
    }
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"prefill": [], "decode_1": [], "decode_8": []} for mode in decoders
    }
    try:
        for r in range(rounds):
            order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
            for mode in order:
                prefill, one = measure(decoders[mode], 1, steps)
                _, eight = measure(decoders[mode], 8, steps)
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
