"""A LoRA adapter GGUF of the full tuning recipe's shape, with random factors, and its merge.

What an adapter costs per token depends on its shape (rank, adapted weights, tensor type), not
on its values, so this stands in for a trained one in ``benchmarks/lora_speed.py``: rank 16,
alpha 32, the seven projections (q, k, v, o, gate, up, down) of every layer, F32 (168 pairs
for the 0.5B). ``--merge`` also writes the model ``pice edge serve --lora-merge`` would serve
(into the model cache's ``merged/``) and prints its path:

    python benchmarks/full_shape_lora.py --out full-shape.gguf --merge
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_agent.engine.lora_merge import merged_model
from pice.models.registry import default_cache_dir, resolve_model
from tests.support.gguf_files import weight_shapes, write_lora

KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q8_0")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    base = resolve_model(args.model, pull=False).path
    names = [f"blk.{i}.{kind}.weight" for i in range(args.layers) for kind in KINDS]
    write_lora(args.out, "qwen2", weight_shapes(base, names), rank=16, alpha=32.0, b_scale=0.01)
    sys.stdout.write(f"adapter: {args.out} ({args.out.stat().st_size} bytes)\n")
    if args.merge:
        report = merged_model(base, args.out, 1.0, default_cache_dir() / "merged")
        sys.stdout.write(f"merged: {report.path} ({report.seconds:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
