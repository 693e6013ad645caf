"""What llama.cpp's CPU kernels give per weight format (see docs/benchmarks-edge.md).

For a model and requantised copies of it (``llama_model_quantize``): bare ``llama_decode``
tokens/s with 1 and with 8 sequences per step (the same measurement as ``pice edge bench``'s
``raw-decode`` rows; every model loaded at once and measured in interleaved rounds, medians
reported), prefill tokens/s over a 400-token prompt, and perplexity over this repository's
docs (to see what quantising twice costs).

python benchmarks/kernel_formats.py --threads 2 --formats q8_0,iq4_nl,q4_0 --out formats.json
python benchmarks/kernel_formats.py --model qwen2.5-coder-1.5b-instruct --threads 1 --formats "" \
    --no-perplexity
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.bench import RawDecoder
from edge_agent.engine.llama import ContextConfig, LlamaContext, LlamaModel, TokenBatch
from pice.models.registry import resolve_model
from pice.models.requantize import WEIGHT_FORMATS, requantize

DOCS = Path(__file__).resolve().parent.parent / "docs"
N_BATCH = 512


def docs_tokens(model: LlamaModel, count: int) -> list[int]:
    text = "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))
    return model.tokenize(text, add_special=True, parse_special=False)[:count]


def prefill_and_perplexity(path: Path, threads: int, perplexity: bool) -> tuple[float, float]:
    """Prefill tokens/s over 400 tokens; perplexity over 2048 tokens (NaN when skipped)."""
    model = LlamaModel(path)
    ctx = LlamaContext(model, ContextConfig(4096, N_BATCH, 1, threads))
    batch = TokenBatch(N_BATCH, 1)
    try:
        prompt = docs_tokens(model, 400)
        for pos, token in enumerate(prompt):
            batch.add(token, pos, (0,), logits=pos == len(prompt) - 1)
        started = time.monotonic()
        if ctx.decode(batch) != 0:
            raise RuntimeError("llama_decode failed")
        prefill = len(prompt) / (time.monotonic() - started)
        if not perplexity:
            return prefill, float("nan")
        ctx.clear()
        tokens = docs_tokens(model, 2048)
        nll, scored = 0.0, 0
        for start in range(0, len(tokens) - 1, N_BATCH):
            chunk = tokens[start : start + N_BATCH]
            batch.clear()
            for i, token in enumerate(chunk):
                batch.add(token, start + i, (0,), logits=True)
            if ctx.decode(batch) != 0:
                raise RuntimeError("llama_decode failed")
            for i in range(len(chunk)):
                if start + i + 1 >= len(tokens):
                    break
                logits = ctx.logits(i).astype(np.float64)
                peak = logits.max()
                log_z = peak + np.log(np.exp(logits - peak).sum())
                nll += float(log_z - logits[tokens[start + i + 1]])
                scored += 1
        return prefill, float(np.exp(nll / scored))
    finally:
        batch.close()
        ctx.close()
        model.close()


def decode_rounds(
    models: list[tuple[Path, str]], threads: int, steps: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Tokens/s of 1 and of 8 sequences per step for every model, interleaved in rounds.

    All models stay loaded and each round measures each of them, so a machine whose speed
    drifts (a shared host) slows every format alike.
    """
    decoders = [(RawDecoder(path, threads, 8), label) for path, label in models]
    speeds: dict[str, dict[str, list[float]]] = {label: {"1": [], "8": []} for _, label in models}
    try:
        for r in range(rounds):
            for decoder, label in decoders:
                speeds[label]["1"].append(steps / decoder.seconds(1, steps))
                speeds[label]["8"].append(8 * steps / decoder.seconds(8, steps))
            summary = ", ".join(
                f"{label} {v['1'][-1]:.1f}/{v['8'][-1]:.1f}" for label, v in speeds.items()
            )
            print(f"round {r + 1}/{rounds} (1/8 seqs tok/s): {summary}", file=sys.stderr)
    finally:
        for decoder, _ in decoders:
            decoder.close()
    return speeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="model name or path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--formats", default="q8_0,iq4_nl,q4_0", help=f"of {', '.join(WEIGHT_FORMATS)}"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved decode rounds")
    parser.add_argument("--steps", type=int, default=32, help="decode steps per measurement")
    parser.add_argument("--no-perplexity", dest="perplexity", action="store_false")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    source = resolve_model(args.model, progress=False).path
    formats = [f for f in args.formats.split(",") if f]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        models = [(source, "as provisioned")]
        for fmt in formats:
            out = Path(folder) / f"{source.stem}-{fmt}.gguf"
            requantize(source, out, fmt, progress=True)
            models.append((out, f"requantised {fmt}"))
        speeds = decode_rounds(models, args.threads, args.steps, max(1, args.rounds))
        for path, label in models:
            print(f"prefill and perplexity: {label} …", file=sys.stderr, flush=True)
            prefill, ppl = prefill_and_perplexity(path, args.threads, args.perplexity)
            one, eight = speeds[label]["1"], speeds[label]["8"]
            ratios = [b / a for a, b in zip(one, eight, strict=True)]
            rows.append(
                {
                    "weights": label,
                    "decode_1_seq_tok_s": statistics.median(one),
                    "decode_8_seq_tok_s": statistics.median(eight),
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "rounds": {"1": one, "8": eight},
                    "prefill_tok_s": prefill,
                    "perplexity": ppl,
                }
            )
    print(f"\n{args.model}, {args.threads} thread(s), medians of {args.rounds} rounds\n")
    print("| weights | 1 seq tok/s | 8 seqs tok/s | ratio (min-max) | prefill tok/s | perplexity |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['weights']} | {r['decode_1_seq_tok_s']:.1f} | {r['decode_8_seq_tok_s']:.1f} "
            f"| {r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) "
            f"| {r['prefill_tok_s']:.0f} | {r['perplexity']:.1f} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"model": args.model, "threads": args.threads, "rounds": args.rounds, "rows": rows}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
