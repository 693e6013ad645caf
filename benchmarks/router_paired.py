"""Two routers on the same labelled questions: each one's agreement and the paired difference.

A router is a head (weights JSON) over an encoder: the pinned ONNX file derived to int8 with a
LoRA (``--a-lora``/``--b-lora``: an ``.npz`` of factors, or ``none`` for the stock encoder).
Both encoders are derived into a scratch directory as the gateway derives its own
(:func:`pice_gateway.router.quantize.quantize_encoder`); every question goes through both, and
the difference's 95% interval is a bootstrap over questions (paired). Used for router-v2 against
router-v3 (docs/benchmarks.md, "Router v3"):

    git show d36186d:src/pice_gateway/router/weights.json > /tmp/router-v2.json
    taskset -c 1 python benchmarks/router_paired.py --a-weights /tmp/router-v2.json --a-lora none \\
        benchmarks/router/heldout.jsonl sot/data/vicuna/router.csv ... \\
        --out benchmarks/results/router_v2_v3_paired.json

``--b-weights``/``--b-lora`` default to the shipped router. A router whose weights hold early
exits runs its encoder cut at their blocks, as the gateway does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx

from pice.models.assets import provision_asset
from pice.models.registry import default_cache_dir
from pice_gateway.router.assets import ENCODER_LORA, ENCODER_ONNX, EncoderFiles, provision_encoder
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
from pice_gateway.router.quantize import quantize_encoder, split_blocks
from pice_gateway.router.training import Example, bootstrap_ci, evaluate, load_examples


def hits(examples: list[Example], encoder: SentenceEncoder, weights: RouterWeights) -> list[bool]:
    """Per question, whether the router agrees: ``pice router eval``'s own evaluation."""
    wrong = {e["index"] for e in evaluate(examples, encoder.embed_stages, weights).errors}
    return [i not in wrong for i in range(len(examples))]


def compare(a: list[bool], b: list[bool], examples: list[Example]) -> dict[str, Any]:
    n = len(examples)
    diff = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    lo, hi = bootstrap_ci(diff)
    return {
        "n": n,
        "always_direct": round(sum(e.label == "direct" for e in examples) / n, 4),
        "a": round(sum(a) / n, 4),
        "b": round(sum(b) / n, 4),
        "b_minus_a": round(sum(diff) / n, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "only_b_right": sum(y and not x for x, y in zip(a, b, strict=True)),
        "only_a_right": sum(x and not y for x, y in zip(a, b, strict=True)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+", help="labelled JSONL or SoT router.csv")
    parser.add_argument("--a-weights", type=Path, required=True)
    parser.add_argument("--a-lora", default="none", help="factors .npz, or none")
    parser.add_argument("--b-weights", type=Path, default=BUNDLED_WEIGHTS)
    parser.add_argument("--b-lora", default=str(ENCODER_LORA), help="factors .npz, or none")
    parser.add_argument("--a-layers", type=int, help="a's encoder keeps its first N blocks")
    parser.add_argument("--b-layers", type=int, help="b's encoder keeps its first N blocks")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    tokenizer = provision_encoder(pull=False).tokenizer
    results: dict[str, Any] = {"a": str(args.a_weights), "b": str(args.b_weights)}
    with tempfile.TemporaryDirectory(prefix="pice-router-paired-") as scratch:
        routers = []
        sides = (
            ("a", args.a_lora, args.a_weights, args.a_layers),
            ("b", args.b_lora, args.b_weights, args.b_layers),
        )
        for name, lora, weights, layers in sides:
            graph = Path(scratch) / f"{name}.onnx"
            adapter = None if lora == "none" else Path(lora)
            quantize_encoder(source, graph, adapter, layers=layers)
            head = RouterWeights.load(weights)
            stages: list[Path] = []
            if head.exits:
                for index, stage in enumerate(split_blocks(onnx.load(graph), head.exit_blocks)):
                    stages.append(graph.with_suffix(f".stage{index}.onnx"))
                    onnx.save(stage, stages[-1])
            files = EncoderFiles(graph, tokenizer, tuple(stages))
            routers.append((SentenceEncoder(files), head))
        out = sys.stdout
        out.write("| data | n | always direct | a | b | b − a [95% CI] | only b / only a right |\n")
        out.write("|---|---|---|---|---|---|---|\n")
        for path in args.data:
            examples = load_examples(path)
            (enc_a, w_a), (enc_b, w_b) = routers
            row = compare(hits(examples, enc_a, w_a), hits(examples, enc_b, w_b), examples)
            results[str(path)] = row
            lo, hi = row["ci95"]
            out.write(
                f"| {path} | {row['n']} | {row['always_direct']:.3f} | {row['a']:.3f} | "
                f"{row['b']:.3f} | {row['b_minus_a']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
                f"{row['only_b_right']} / {row['only_a_right']} |\n"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
