"""Train a LoRA adapter on the edge model and export it as a llama.cpp adapter GGUF.

Run with the *tuning* virtual environment's python (torch, transformers, peft, gguf,
safetensors; the PICE environment has none of them), as a script:

    .venv-tune/bin/python src/pice_tune/worker.py train --model-dir HF_DIR --data TRAIN.jsonl \
        --out RUN_DIR --max-steps 3 --rank 4
    .venv-tune/bin/python src/pice_tune/worker.py export --adapter-dir RUN_DIR/adapter \
        --base-gguf MODEL.gguf --out ADAPTER.gguf

``train`` reads prompt/completion records (:mod:`pice_tune.dataset` renders them from the edge's
own expansion prompt, or the gateway's outline prompt for the sketcher, whose completion ends with
the chat template's end of turn), masks the loss to the completion, and saves a checkpoint
(adapter, optimiser, step) every ``--save-every`` steps under ``RUN_DIR/checkpoint-N``; run again
with the same ``--out`` and it resumes from the newest one. ``export`` writes the peft adapter in
the layout llama.cpp's ``llama_adapter_lora_init`` loads: one ``<base tensor>.lora_a`` of numpy
shape (rank, in) and one ``.lora_b`` of shape (out, rank) per adapted weight, plus
``general.type=adapter``, ``adapter.type=lora`` and ``adapter.lora.alpha``; every pair is checked
against the base GGUF's tensor before anything is written (``pice tune export --merged`` then
folds that file into the base with :mod:`edge_agent.engine.lora_merge`, in the PICE environment,
as ``pice edge serve --lora-merge`` does). ``dpo`` trains on preference records
(``chosen``/``rejected`` in place of ``completion``) with trl's ``DPOTrainer``: a new LoRA on the
model (the reference is the model without it), or ``--init-adapter`` continued (the reference
is that adapter, frozen); checkpoints are the Trainer's own ``RUN_DIR/checkpoint-N``.
This file imports nothing from PICE so it runs in that other environment. It stays one file
(sections: train, dpo, export) because it is handed to that interpreter as a script path:
a package would have to be put on the other environment's import path, and with PICE
installed into site-packages that path would put the PICE environment's own libraries
(numpy, transformers' pins) ahead of the tuning environment's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import random
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "checkpoint-"
BEST_ADAPTER = "adapter-best"
LAST_ADAPTER = "adapter-last"
STATE_FILE = "trainer-state.json"
SUMMARY_FILE = "train-summary.json"


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def latest_checkpoint(out: Path, marker: str = STATE_FILE) -> Path | None:
    """The newest complete ``checkpoint-N`` (one holding ``marker``: ours, or the
    Trainer's ``trainer_state.json`` for ``dpo``)."""
    found = [
        (int(p.name[len(CHECKPOINT_PREFIX) :]), p)
        for p in out.glob(CHECKPOINT_PREFIX + "*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / marker).exists()
    ]
    return max(found)[1] if found else None


# -- train -----------------------------------------------------------------------------


_TURN_MARK = "\u2063pice-end-of-turn\u2063"


def end_of_turn_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The tokens the chat template writes after an assistant turn's text, up to and including
    the first special token (Qwen: ``<|im_end|>``, not the newline after it): what a model
    emits to end its answer, and what llama.cpp and vLLM stop at.

    Read from the template itself (an assistant turn holding a marker, rendered, cut after the
    marker) rather than assumed, so another model family gets its own end of turn.
    """
    rendered = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": _TURN_MARK}], tokenize=False
    )
    tail = str(rendered).rsplit(_TURN_MARK, 1)[1]
    ids = list(tokenizer(tail, add_special_tokens=False)["input_ids"])
    special = set(tokenizer.all_special_ids)
    for i, token in enumerate(ids):
        if token in special:
            return ids[: i + 1]
    if tokenizer.eos_token_id is None:
        raise SystemExit("the chat template ends a turn with no special token, and no eos")
    return [int(tokenizer.eos_token_id)]


def _examples(tokenizer: Any, data: Path, seq_len: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per record; prompt tokens are masked with -100.

    The prompt and the completion are tokenised apart and joined, so the boundary is exactly
    where the edge starts generating. A record longer than ``seq_len`` keeps its last tokens:
    the completion and the end of the prompt (the point being expanded) matter most.
    """
    out = []
    for line in data.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        prompt = tokenizer.apply_chat_template(
            record["messages"], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt + record["prefix"], add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
        if record.get("end_turn"):
            completion_ids = list(completion_ids) + end_of_turn_ids(tokenizer, record["messages"])
        ids = list(prompt_ids) + list(completion_ids)
        labels = [-100] * len(prompt_ids) + list(completion_ids)
        out.append((ids[-seq_len:], labels[-seq_len:]))
    if not out:
        raise SystemExit(f"{data} holds no training records")
    return out


def completion_loss(torch: Any, model: Any, input_ids: Any, mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over the completion tokens, as ``model(labels=...)``
    computes it, with the output projection applied only where a label is kept.

    Hugging Face's causal-LM loss projects every position onto the 151k-token vocabulary; the
    prompt (system text, question, outline) is ~3/4 of each record and its logits are thrown
    away by the -100 mask. Projecting only the completion's hidden states gives the same loss
    (``tests/tune/test_worker_loss.py``) for a quarter of the output matrix's work and memory.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = base.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def batch_tensors(torch: Any, batch: list[tuple[list[int], list[int]]], pad: int) -> Any:
    """(input ids, attention mask, labels) of a batch, right-padded to its longest record."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
    return input_ids, mask, labels


def validation_loss(
    torch: Any,
    model: Any,
    examples: list[tuple[list[int], list[int]]],
    batch_size: int,
    pad: int,
    device: str = "cpu",
) -> float:
    """The completion loss over ``examples`` per completion token (as if one batch), with
    dropout off and no gradients; the model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            input_ids, mask, labels = batch_tensors(
                torch, examples[start : start + batch_size], pad
            )
            kept = int((labels[:, 1:] != -100).sum())
            loss = completion_loss(
                torch, model, input_ids.to(device), mask.to(device), labels.to(device)
            )
            total += float(loss) * kept
            tokens += kept
    if was_training:
        model.train()
    return total / max(1, tokens)


def train(args: argparse.Namespace) -> int:
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    peft = importlib.import_module("peft")

    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    resumed = latest_checkpoint(out)
    if resumed is not None:
        _refuse_fewer_steps(
            out, resumed, json.loads((resumed / STATE_FILE).read_text())["step"], args.max_steps
        )

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(args.model_dir))
    examples = _examples(tokenizer, args.data, args.seq_len)
    val_examples = _examples(tokenizer, args.val_data, args.seq_len) if args.val_data else []
    # Float32 on the CPU (its bfloat16 matmuls are slow and lossy for the small LoRA
    # updates); bfloat16 on a GPU.
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = transformers.AutoModelForCausalLM.from_pretrained(str(args.model_dir), dtype=dtype)
    config = peft.LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=args.targets.split(","),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, config)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    step = 0
    losses: list[float] = []
    # [step, loss] at every checkpoint when there is validation data.
    val_losses: list[list[float]] = []
    if resumed is not None:
        state = json.loads((resumed / STATE_FILE).read_text())
        weights = importlib.import_module("safetensors.torch").load_file(
            str(resumed / "adapter_model.safetensors")
        )
        peft.set_peft_model_state_dict(model, weights)
        optimizer.load_state_dict(torch.load(resumed / "optimizer.pt", map_location=device))
        step = int(state["step"])
        losses = list(state["losses"])
        val_losses = [list(v) for v in state.get("val_losses", [])]
        _log(f"resumed from {resumed} at step {step}")

    # The order of examples is a function of the seed and the step only, so a resumed run
    # sees the same examples it would have seen without the interruption.
    def batch_for(at: int) -> list[tuple[list[int], list[int]]]:
        order = list(range(len(examples)))
        epoch, offset = divmod(at * args.batch_size, len(examples))
        random.Random(args.seed + epoch).shuffle(order)
        picked = [order[(offset + i) % len(order)] for i in range(args.batch_size)]
        return [examples[i] for i in picked]

    def save_adapter(target: Path, with_state: bool = False) -> None:
        """The adapter (and with ``with_state`` the optimiser and step) into ``target``,
        written beside it first so an interruption never leaves half a directory."""
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        if with_state:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            state = {"step": step, "losses": losses, "val_losses": val_losses}
            (tmp / STATE_FILE).write_text(json.dumps(state) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    def save_checkpoint() -> None:
        target = out / f"{CHECKPOINT_PREFIX}{step}"
        save_adapter(target, with_state=True)
        for old in out.glob(CHECKPOINT_PREFIX + "*"):
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    model.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while step < args.max_steps:
        t0 = time.monotonic()
        input_ids, mask, labels = batch_tensors(torch, batch_for(step), pad)
        loss = completion_loss(
            torch, model, input_ids.to(device), mask.to(device), labels.to(device)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        losses.append(round(float(loss.item()), 4))
        _log(
            f"step {step}/{args.max_steps} loss {losses[-1]:.4f} "
            f"({time.monotonic() - t0:.1f} s, peak {peak_rss_mib():.0f} MiB)"
        )
        if step % args.save_every == 0 or step == args.max_steps:
            if val_examples:
                best = min((v for _, v in val_losses), default=math.inf)
                value = validation_loss(torch, model, val_examples, args.batch_size, pad, device)
                val_losses.append([step, value])
                _log(f"step {step}: validation loss {value:.4f} ({len(val_examples)} examples)")
                if value < best:
                    save_adapter(out / BEST_ADAPTER)
            save_checkpoint()

    final = out / "adapter"
    chosen = step
    if val_losses:
        # The adapter is the checkpoint of the lowest validation loss; the last is kept apart.
        save_adapter(out / LAST_ADAPTER)
        chosen = int(min(val_losses, key=lambda v: v[1])[0])
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / BEST_ADAPTER, final)
    else:
        save_adapter(final)
    summary = {
        "steps": step,
        "examples": len(examples),
        "losses": losses,
        "val_examples": len(val_examples),
        "val_losses": val_losses,
        "chosen_step": chosen,
        **_run_facts(device, resumed, started, torch, transformers, peft),
    }
    _write_summary(out, summary, final)
    return 0


def _refuse_fewer_steps(out: Path, checkpoint: Path, step: int, max_steps: int) -> None:
    """A run is never cut back: its newest checkpoint is past ``max_steps``."""
    if int(step) > max_steps:
        raise SystemExit(
            f"{out} is at step {step} already ({checkpoint.name}): ask for "
            f"--max-steps {step} or more, or train in another workdir"
        )


def _run_facts(
    device: str, resumed: Path | None, started: float, *libraries: Any
) -> dict[str, Any]:
    """What every training summary ends with: where and how long it ran, its peak memory,
    the checkpoint it resumed from and the versions of the libraries that trained it."""
    return {
        "device": device,
        "resumed_from": None if resumed is None else resumed.name,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **{lib.__name__: lib.__version__ for lib in libraries},
    }


def _write_summary(out: Path, summary: dict[str, Any], final: Path) -> None:
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    _log(f"adapter saved to {final}")


# -- dpo -------------------------------------------------------------------------------


def _preference_rows(tokenizer: Any, path: Path) -> list[dict[str, str]]:
    """trl's prompt/chosen/rejected strings: the chat-templated prompt opened at the point
    (what the edge decodes after), and each body as written (trl appends the end of turn)."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        prompt = tokenizer.apply_chat_template(
            record["messages"], tokenize=False, add_generation_prompt=True
        )
        rows.append(
            {
                "prompt": str(prompt) + record["prefix"],
                "chosen": record["chosen"],
                "rejected": record["rejected"],
            }
        )
    if not rows:
        raise SystemExit(f"{path} holds no preference records")
    return rows


def dpo(args: argparse.Namespace) -> int:
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    peft = importlib.import_module("peft")
    trl = importlib.import_module("trl")
    datasets = importlib.import_module("datasets")

    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    resumed = latest_checkpoint(out, marker="trainer_state.json")
    if resumed is not None:
        state = json.loads((resumed / "trainer_state.json").read_text())
        _refuse_fewer_steps(out, resumed, state["global_step"], args.max_steps)
        if int(state["global_step"]) == args.max_steps:
            # The Trainer, resumed at its max_steps, would train a step more: the run is as
            # long as asked, so its adapter is the checkpoint's (or the best one's).
            _log(f"{resumed.name} is at step {args.max_steps}: nothing to train")
            source = _checkpoint_adapter(out, resumed, state.get("best_model_checkpoint"))
            final = _publish_adapter(out, lambda tmp: _copy_adapter(source, tmp))
            facts = _run_facts(device, resumed, started, torch, transformers, peft, trl)
            summary = _dpo_summary(args, state, _preference_count(args), facts)
            _write_summary(out, summary, final)
            return 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(args.model_dir))
    train_rows = _preference_rows(tokenizer, args.data)
    val_rows = _preference_rows(tokenizer, args.val_data) if args.val_data else []
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = transformers.AutoModelForCausalLM.from_pretrained(str(args.model_dir), dtype=dtype)
    peft_config = None
    if args.init_adapter:
        model = peft.PeftModel.from_pretrained(model, str(args.init_adapter), is_trainable=True)
    else:
        peft_config = peft.LoraConfig(
            r=args.rank,
            lora_alpha=args.alpha,
            lora_dropout=args.dropout,
            target_modules=args.targets.split(","),
            bias="none",
            task_type="CAUSAL_LM",
        )
    evaluate = bool(val_rows)
    config = trl.DPOConfig(
        output_dir=str(out),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        beta=args.beta,
        max_length=args.seq_len,
        logging_steps=1,
        save_steps=args.save_every,
        save_total_limit=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=args.save_every if evaluate else None,
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        seed=args.seed,
        use_cpu=device == "cpu",
        bf16=device != "cpu",
        report_to=[],
        disable_tqdm=True,
        # Activations of a 0.5B at batch 4 fit easily; recomputing them costs a third more time.
        gradient_checkpointing=False,
        dataloader_num_workers=0,
    )
    trainer = trl.DPOTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(train_rows),
        eval_dataset=datasets.Dataset.from_list(val_rows) if evaluate else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.add_callback(_progress_callback(transformers, args.max_steps))
    trainer.train(resume_from_checkpoint=str(resumed) if resumed else None)
    final = _publish_adapter(
        out, lambda tmp: trainer.model.save_pretrained(str(tmp), selected_adapters=["default"])
    )
    state = {
        "global_step": trainer.state.global_step,
        "log_history": trainer.state.log_history,
        "best_model_checkpoint": trainer.state.best_model_checkpoint,
    }
    facts = _run_facts(device, resumed, started, torch, transformers, peft, trl)
    summary = _dpo_summary(args, state, (len(train_rows), len(val_rows)), facts)
    _write_summary(out, summary, final)
    return 0


def _publish_adapter(out: Path, write: Callable[[Path], object]) -> Path:
    """``out/adapter``, written whole by ``write`` into a temporary directory first."""
    final = out / "adapter"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def _checkpoint_adapter(out: Path, last: Path, best: str | None) -> Path:
    """The checkpoint a finished run's adapter comes from: the best one (the lowest validation
    loss, when validated) if it is still there, else the newest."""
    if best and (out / Path(best).name / "adapter_model.safetensors").exists():
        return out / Path(best).name
    return last


def _copy_adapter(checkpoint: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(checkpoint / name, target / name)


def _preference_count(args: argparse.Namespace) -> tuple[int, int]:
    """How many pairs the run trains and validates on (their non-empty lines)."""

    def count(path: Path | None) -> int:
        return (
            0 if path is None else sum(1 for line in path.read_text().splitlines() if line.strip())
        )

    return count(args.data), count(args.val_data)


def _dpo_summary(
    args: argparse.Namespace,
    state: dict[str, Any],
    pairs: tuple[int, int],
    facts: dict[str, Any],
) -> dict[str, Any]:
    """The DPO run's summary, from the Trainer's state (live, or a checkpoint's
    ``trainer_state.json``): its losses, reward accuracies and margins, validation losses."""
    history: list[dict[str, Any]] = state["log_history"]
    return {
        "method": "dpo",
        "steps": state["global_step"],
        "pairs": pairs[0],
        "val_pairs": pairs[1],
        "beta": args.beta,
        "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        "losses": [round(float(h["loss"]), 4) for h in history if "loss" in h],
        "reward_accuracies": [
            round(float(h["rewards/accuracies"]), 4) for h in history if "rewards/accuracies" in h
        ],
        "reward_margins": [
            round(float(h["rewards/margins"]), 4) for h in history if "rewards/margins" in h
        ],
        "val_losses": [
            [h["step"], round(float(h["eval_loss"]), 4)] for h in history if "eval_loss" in h
        ],
        "chosen_step": _best_step(state.get("best_model_checkpoint"), state["global_step"]),
        **facts,
    }


def _best_step(best_checkpoint: str | None, last: int) -> int:
    if not best_checkpoint:
        return last
    return int(Path(best_checkpoint).name.removeprefix(CHECKPOINT_PREFIX))


def _progress_callback(transformers: Any, max_steps: int) -> Any:
    """One line per logged step on stderr, as the ``train`` step prints."""

    class Progress(transformers.TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                _log(
                    f"step {state.global_step}/{max_steps} loss {float(logs['loss']):.4f} "
                    f"reward accuracy {float(logs.get('rewards/accuracies', 0.0)):.2f} "
                    f"margin {float(logs.get('rewards/margins', 0.0)):.3f} "
                    f"(peak {peak_rss_mib():.0f} MiB)"
                )
            if "eval_loss" in logs:
                _log(f"step {state.global_step}: validation loss {float(logs['eval_loss']):.4f}")

    return Progress()


# -- export ----------------------------------------------------------------------------


def _hf_weight_name(peft_key: str) -> tuple[str, str]:
    """``base_model.model.X.lora_A.weight`` -> (``X.weight``, ``a``)."""
    key = peft_key.removeprefix("base_model.model.")
    for marker, part in ((".lora_A.", "a"), (".lora_B.", "b")):
        if marker in key:
            module = key.split(marker)[0]
            return module + ".weight", part
    raise SystemExit(f"unexpected tensor in the adapter: {peft_key}")


def _lora_pairs(adapter_dir: Path, reader: Any) -> tuple[str, int, float, dict[str, Any]]:
    """(architecture, rank, alpha, {llama.cpp weight name: {"a": A, "b": B}}) of a peft
    adapter, every pair checked against the base GGUF (``reader``)'s tensor of that name."""
    gguf = importlib.import_module("gguf")
    load_file = importlib.import_module("safetensors.numpy").load_file
    np = importlib.import_module("numpy")

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))

    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    base_shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    n_blocks = 1 + max(int(n.split(".")[1]) for n in base_shapes if n.startswith("blk."))
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, n_blocks)

    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in weights.items():
        hf_name, part = _hf_weight_name(key)
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise SystemExit(f"no llama.cpp name for {hf_name}")
        pairs.setdefault(name, {})[part] = np.ascontiguousarray(tensor, dtype=np.float32)

    for name, pair in sorted(pairs.items()):
        if set(pair) != {"a", "b"} or name not in base_shapes:
            raise SystemExit(f"{name}: incomplete pair or not in the base GGUF")
        # GGUF lists dimensions innermost first: the base weight is (in, out).
        n_in, n_out = base_shapes[name][:2]
        a, b = pair["a"], pair["b"]
        if a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise SystemExit(
                f"{name}: lora shapes {a.shape}, {b.shape} do not fit ({n_in}, {n_out})"
            )
    return arch, rank, alpha, pairs


def export(args: argparse.Namespace) -> int:
    gguf = importlib.import_module("gguf")
    reader = gguf.GGUFReader(str(args.base_gguf))
    arch, rank, alpha, pairs = _lora_pairs(args.adapter_dir, reader)

    tmp = args.out.with_name(args.out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(args.name or args.out.stem)
    for name, pair in sorted(pairs.items()):
        writer.add_tensor(name + ".lora_a", pair["a"])
        writer.add_tensor(name + ".lora_b", pair["b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(args.out)
    report = {"architecture": arch, "rank": rank, "alpha": alpha, "pairs": len(pairs)}
    sys.stdout.write(json.dumps(report) + "\n")
    _log(f"wrote {len(pairs)} LoRA pairs to {args.out}")
    return 0


def inspect(args: argparse.Namespace) -> int:
    """Print a GGUF's metadata strings/numbers and tensor shapes (ne order) as JSON."""
    gguf = importlib.import_module("gguf")
    reader = gguf.GGUFReader(str(args.gguf))
    meta: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or not field.data or len(field.types) != 1:
            continue
        value = field.parts[field.data[0]]
        if field.types[0] == gguf.GGUFValueType.STRING:
            meta[name] = bytes(value).decode(errors="replace")
        else:
            meta[name] = value.tolist()[0]
    tensors = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    sys.stdout.write(json.dumps({"metadata": meta, "tensors": tensors}) + "\n")
    return 0


def _training_args(parser: argparse.ArgumentParser, lr: float) -> None:
    """The flags ``train`` and ``dpo`` share: data, output, the recipe and the machine."""
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--val-data", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    steps = parser.add_subparsers(dest="step", required=True)
    t = steps.add_parser("train")
    _training_args(t, lr=2e-4)
    t.set_defaults(handler=train)
    d = steps.add_parser("dpo")
    _training_args(d, lr=5e-5)
    d.add_argument("--init-adapter", type=Path, default=None)
    d.add_argument("--beta", type=float, default=0.1)
    d.set_defaults(handler=dpo)
    e = steps.add_parser("export")
    e.add_argument("--adapter-dir", type=Path, required=True)
    e.add_argument("--base-gguf", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--name")
    e.set_defaults(handler=export)
    i = steps.add_parser("inspect")
    i.add_argument("gguf", type=Path)
    i.set_defaults(handler=inspect)
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
