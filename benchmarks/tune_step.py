"""What the completion-only loss saves a training step: Hugging Face's causal-LM loss (every
position projected onto the vocabulary) against the worker's ``completion_loss`` (only the
completion's positions), side by side on the real model and real training records.

The driver (this file, run with the project's venv) renders a dataset's examples as the
worker's training records, then runs this same file in the tuning environment, where one
process loads the base model with the default recipe's LoRA and, in every round, times one
forward + backward of the same batch under each loss, in an order drawn at random per round
(seeded and recorded). The ratio ours/HF is taken per round and summarised by its mean with a
percentile-bootstrap 95% interval over rounds. Peak memory is measured apart: each loss in a
process of its own for ``--memory-steps`` steps (the peak resident size is per process).

    python benchmarks/tune_step.py --data tune-out/data-v1.jsonl --rounds 8 \
        --out benchmarks/results/tune_step.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "src" / "pice_tune" / "worker.py"
LOSSES = ("hf", "completion")


# -- the tuning-environment side ------------------------------------------------------------


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_and_batches(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    peft = importlib.import_module("peft")
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")

    worker = _load_worker()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    examples = worker._examples(tokenizer, Path(args.records), args.seq_len)
    random.Random(args.seed).shuffle(examples)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    config = peft.LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=0.0,  # both losses must see the same network in a round
        target_modules=args.targets.split(","),
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, config)
    model.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = [
        worker.batch_tensors(torch, examples[start : start + args.batch_size], pad)
        for start in range(0, len(examples) - args.batch_size + 1, args.batch_size)
    ]
    return worker, model, batches


def _step(torch: Any, worker: Any, model: Any, loss_name: str, batch: Any) -> tuple[float, float]:
    input_ids, mask, labels = batch
    started = time.perf_counter()
    if loss_name == "hf":
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    else:
        loss = worker.completion_loss(torch, model, input_ids, mask, labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started, float(loss.detach())


def inner_time(args: argparse.Namespace) -> None:
    torch = importlib.import_module("torch")
    worker, model, batches = _model_and_batches(args)
    order_rng = random.Random(args.seed)
    _step(torch, worker, model, "hf", batches[0])  # warm-up: first-call allocations
    rows = []
    for r in range(args.rounds):
        batch = batches[r % len(batches)]
        order = list(LOSSES)
        order_rng.shuffle(order)
        row: dict[str, Any] = {"round": r, "order": order, "tokens": int(batch[1].sum())}
        for name in order:
            seconds, loss = _step(torch, worker, model, name, batch)
            row[name] = {"seconds": seconds, "loss": loss}
        rows.append(row)
        print(
            f"round {r + 1}/{args.rounds}: hf {row['hf']['seconds']:.2f} s, "
            f"completion {row['completion']['seconds']:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps({"rounds": rows, "batches": len(batches)}))


def inner_memory(args: argparse.Namespace) -> None:
    torch = importlib.import_module("torch")
    worker, model, batches = _model_and_batches(args)
    before = worker.peak_rss_mib()
    for i in range(args.memory_steps):
        _step(torch, worker, model, args.loss, batches[i % len(batches)])
    print(json.dumps({"loss": args.loss, "loaded_mib": before, "peak_mib": worker.peak_rss_mib()}))


# -- the driver -----------------------------------------------------------------------------


def _run_inner(venv: Path, argv: list[str]) -> dict[str, Any]:
    result = subprocess.run(
        [str(venv / "bin" / "python"), __file__, *argv],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a `pice tune data` dataset (driver)")
    parser.add_argument("--base-model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--venv", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    # The tuning-environment side (set by the driver):
    parser.add_argument("--inner", choices=("time", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--loss", choices=LOSSES, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--alpha", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner == "time":
        inner_time(args)
        return 0
    if args.inner == "memory":
        inner_memory(args)
        return 0

    sys.path.insert(0, str(ROOT / "src"))
    from pice.cloud.vllm import ensure_checkpoint
    from pice.models.registry import resolve_model
    from pice_bench.stats import bootstrap_interval
    from pice_tune.dataset import read_dataset, training_record
    from pice_tune.recipe import Recipe
    from pice_tune.steps import find_tune_venv

    if args.data is None:
        parser.error("--data is required")
    venv = find_tune_venv(args.venv or Path(os.environ.get("PICE_TUNE_VENV", ".venv-tune")))
    checkpoint = ensure_checkpoint(resolve_model(args.base_model), venv)
    examples, data_sha = read_dataset(args.data)
    recipe = Recipe()  # the default recipe's adapter: rank, alpha and target modules
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "train.jsonl"
        records.write_text("".join(json.dumps(training_record(e)) + "\n" for e in examples))
        common = [
            *("--model-dir", str(checkpoint), "--records", str(records)),
            *("--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)),
            *("--threads", str(args.threads), "--seed", str(args.seed)),
            *("--rank", str(recipe.rank), "--alpha", str(recipe.alpha)),
            *("--targets", ",".join(recipe.targets)),
        ]
        timing = _run_inner(venv, ["--inner", "time", "--rounds", str(args.rounds), *common])
        memory = {
            name: _run_inner(
                venv,
                [
                    *("--inner", "memory", "--loss", name),
                    *("--memory-steps", str(args.memory_steps)),
                    *common,
                ],
            )
            for name in LOSSES
        }
    rounds = timing["rounds"]
    ratios = [r["completion"]["seconds"] / r["hf"]["seconds"] for r in rounds]
    low, high = bootstrap_interval(ratios, statistics.fmean)
    loss_gap = max(abs(r["completion"]["loss"] - r["hf"]["loss"]) for r in rounds)
    summary = {
        "hf_seconds_median": statistics.median(r["hf"]["seconds"] for r in rounds),
        "completion_seconds_median": statistics.median(r["completion"]["seconds"] for r in rounds),
        "ratio_mean": statistics.fmean(ratios),
        "ratio_ci95": [low, high],
        "ratios": ratios,
        "max_loss_gap": loss_gap,
        "peak_mib": {name: memory[name]["peak_mib"] for name in LOSSES},
        "loaded_mib": {name: memory[name]["loaded_mib"] for name in LOSSES},
    }
    print(f"{'':<28}{'HF loss':>12}{'completion':>12}{'ratio':>10}")
    print(
        f"{'step s (median)':<28}{summary['hf_seconds_median']:>12.2f}"
        f"{summary['completion_seconds_median']:>12.2f}"
        f"{summary['ratio_mean']:>10.3f}  95% CI [{low:.3f}, {high:.3f}]"
    )
    print(
        f"{'peak RSS MiB':<28}{summary['peak_mib']['hf']:>12.0f}"
        f"{summary['peak_mib']['completion']:>12.0f}"
        f"{summary['peak_mib']['completion'] / summary['peak_mib']['hf']:>10.3f}"
    )
    print(f"largest loss difference between the two: {loss_gap:.2e} (same batch, same weights)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(sys.argv),
            "data": str(args.data),
            "data_sha256": data_sha,
            "base_model": args.base_model,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "recipe": recipe.to_json(),
            "threads": args.threads,
            "rounds": rounds,
            "summary": summary,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
