"""Fine-tune the router's sentence encoder (all-MiniLM-L6-v2) with a LoRA; write its factors.

Run with the *tuning* virtual environment's python (torch, transformers, peft), as a script:

    .venv-tune/bin/python src/pice_tune/router_worker.py --model-dir HF_DIR \
        --data train.jsonl --out encoder-lora.npz --epochs 3

The encoder is trained as the router uses it (mean pooling over the tokens, L2 norm), under a
logistic head on the normalised embedding (scaled by 10, so the head can reach confident
scores), with a LoRA of rank ``--rank`` on every linear layer of the six transformer blocks
(query, key, value, the attention output and both feed-forward layers); the embeddings and
layer norms stay as they are. ``--layers N`` keeps only the first N blocks (a shallower,
faster encoder: the gateway cuts its graph after the same block). The head is thrown away:
``pice router train`` fits the shipped one on the derived int8 encoder, as it always has. The
output is one ``.npz`` of float32 arrays named after the Hugging Face modules:
``<module>.lora_a`` (rank, in) and ``<module>.lora_b`` (out, rank), plus ``scale`` (alpha /
rank): the gateway adds ``scale * B @ A`` to each matrix of the ONNX encoder
(``pice_gateway.router.quantize``). Deterministic for one machine (seeded, one order of
batches); progress goes to stderr, a summary JSON to stdout.

This file imports nothing from PICE, so it runs in that other environment (see ``worker.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

# Every linear layer of the six blocks; not the pooler (unused by mean pooling, not in the ONNX).
TARGETS = r".*encoder\.layer\.\d+\..*(query|key|value|dense)"
HEAD_SCALE = 10.0


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _examples(paths: list[Path]) -> list[tuple[str, float]]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                data = json.loads(line)
                rows.append((str(data["question"]), float(data["label"] == "outline")))
    return rows


def _keep_blocks(model: Any, layers: int) -> None:
    """Keep the first ``layers`` transformer blocks (the gateway's graph is cut the same way)."""
    blocks = model.encoder.layer
    if not 1 <= layers <= len(blocks):
        raise SystemExit(f"--layers {layers}: the encoder has {len(blocks)} blocks")
    model.encoder.layer = blocks[:layers]
    model.config.num_hidden_layers = layers


def train(args: argparse.Namespace) -> dict[str, Any]:
    # The tuning environment's libraries: imported by name, as mypy (run in the PICE
    # environment) has none of them.
    np = importlib.import_module("numpy")
    torch = importlib.import_module("torch")
    peft = importlib.import_module("peft")
    transformers = importlib.import_module("transformers")
    LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model
    AutoModel, AutoTokenizer = transformers.AutoModel, transformers.AutoTokenizer

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    order = random.Random(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    config = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=TARGETS
    )
    base = AutoModel.from_pretrained(args.model_dir)
    if args.layers is not None:
        _keep_blocks(base, args.layers)
    encoder = get_peft_model(base, config)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    optimiser = torch.optim.AdamW(
        [
            {"params": [p for p in encoder.parameters() if p.requires_grad], "lr": args.lr},
            {"params": head.parameters(), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    examples = _examples(args.data)
    started = time.monotonic()
    losses: list[float] = []
    for epoch in range(args.epochs):
        order.shuffle(examples)
        total = 0.0
        for start in range(0, len(examples), args.batch_size):
            batch = examples[start : start + args.batch_size]
            inputs = tokenizer(
                [q for q, _ in batch],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            hidden = encoder(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            logits = head(pooled * HEAD_SCALE).squeeze(-1)
            loss = loss_fn(logits, torch.tensor([label for _, label in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(round(total / len(examples), 4))
        _log(
            f"epoch {epoch + 1}/{args.epochs}: loss {losses[-1]} "
            f"({time.monotonic() - started:.0f} s)"
        )
    arrays: dict[str, Any] = {"scale": np.asarray(config.lora_alpha / args.rank, dtype=np.float32)}
    for name, module in encoder.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            base = name.removeprefix("base_model.model.")
            a = module.lora_A["default"].weight.detach().numpy().astype(np.float32)
            b = module.lora_B["default"].weight.detach().numpy().astype(np.float32)
            arrays[f"{base}.lora_a"] = a
            arrays[f"{base}.lora_b"] = b
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    return {
        "out": str(args.out),
        "examples": len(examples),
        "epochs": args.epochs,
        "rank": args.rank,
        "lr": args.lr,
        "seed": args.seed,
        "losses": losses,
        "modules": (len(arrays) - 1) // 2,
        "layers": args.layers,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, help="keep the first N transformer blocks")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(train(args)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
