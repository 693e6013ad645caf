"""The router's recipe at other training seeds: how far its agreement moves with the seed.

For each seed, the whole recipe as shipped: ``pice tune router-encoder --seed N`` (a LoRA on
the router's training questions, in the tuning environment), the encoder derived with it as
the gateway derives its own, the head fitted by ``pice router train``'s rule (threshold 0.5),
and agreement measured on every labelled file given (``pice router eval``'s reading of the
question). Used for router-v3's spread (docs/benchmarks.md, "Router v3"):

    python benchmarks/router_seeds.py --seeds 0,1,2 benchmarks/router/heldout.jsonl \\
        sot/data/vicuna/router.csv sot/data/wizardlm/router.csv sot/data/lima/router.csv \\
        --out benchmarks/results/router_v3_seeds.json

``--train`` fits on other files (e.g. the first 480 lines of ``train.jsonl``: the ablation);
several files, or SoT's ``router.csv``, are joined into one JSONL first (e.g. ``train.jsonl``
plus ``sot/data/lima/router.csv``: what people's labels of the same convention would buy).
``--layers N`` runs the recipe on the encoder's first N blocks (fine-tuned and cut alike);
``--keep DIR`` keeps each seed's LoRA factors and head (for ``router_paired.py``). Each seed
trains for about 80 s on two cores (six blocks); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pice.models.assets import provision_asset
from pice.models.registry import default_cache_dir
from pice_gateway.router.assets import ENCODER_ONNX, EncoderFiles, provision_encoder
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.quantize import quantize_encoder
from pice_gateway.router.training import DATA_DIR, evaluate, load_examples, train
from pice_tune.router_encoder import EncoderTuning, tune_encoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+", help="labelled JSONL or SoT router.csv")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=Path, nargs="+", default=[DATA_DIR / "train.jsonl"])
    parser.add_argument("--dev", type=Path, default=DATA_DIR / "dev.jsonl")
    parser.add_argument("--venv", type=Path, help="tuning environment (.venv-tune)")
    parser.add_argument("--layers", type=int, help="keep the encoder's first N blocks")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep each seed's LoRA factors and head here")
    args = parser.parse_args()

    source = provision_asset(ENCODER_ONNX, default_cache_dir(), pull=False)
    tokenizer = provision_encoder(pull=False).tokenizer
    sets = {str(path): load_examples(path) for path in args.data}
    runs: list[dict[str, Any]] = []
    out = sys.stdout
    out.write(
        "| seed | "
        + " | ".join(p.name if p.suffix != ".csv" else p.parent.name for p in args.data)
        + " |\n"
    )
    out.write("|---|" + "---|" * len(args.data) + "\n")
    with tempfile.TemporaryDirectory(prefix="pice-router-seeds-") as scratch:
        training = joined(args.train, Path(scratch) / "train.jsonl")
        for seed in (int(s) for s in args.seeds.split(",")):
            lora = Path(scratch) / f"lora-{seed}.npz"
            tuning = EncoderTuning(
                out=lora, data=(training,), seed=seed, venv=args.venv, layers=args.layers
            )
            tune_encoder(tuning)
            graph = Path(scratch) / f"encoder-{seed}.onnx"
            quantize_encoder(source, graph, lora, layers=args.layers)
            embed = SentenceEncoder(EncoderFiles(graph, tokenizer)).embed_stages
            weights = train(embed, training, args.dev, version=f"seed-{seed}", log=lambda _: None)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(lora, args.keep / lora.name)
                shutil.copy(lora.with_suffix(".json"), args.keep / f"lora-{seed}.json")
                weights.save(args.keep / f"head-{seed}.json")
            row: dict[str, Any] = {
                "seed": seed,
                "train": [str(p) for p in args.train],
                "layers": args.layers,
            }
            for name, examples in sets.items():
                row[name] = round(evaluate(examples, embed, weights).accuracy, 4)
            runs.append(row)
            out.write(f"| {seed} | " + " | ".join(f"{row[n]:.3f}" for n in sets) + " |\n")
            out.flush()
    if args.out:
        args.out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return 0


def joined(paths: list[Path], into: Path) -> Path:
    """One JSONL file as the router reads it: ``paths[0]`` itself when it is the only one."""
    if len(paths) == 1 and paths[0].suffix != ".csv":
        return paths[0]
    with into.open("w") as out:
        for path in paths:
            for example in load_examples(path):
                row = {
                    "question": example.question,
                    "label": example.label,
                    "category": example.category,
                }
                out.write(json.dumps(row) + "\n")
    return into


if __name__ == "__main__":
    sys.exit(main())
