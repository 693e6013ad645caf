"""``pice tune``: the fine-tuning pipeline, step by step (docs/fine-tuning.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pice_tune.distill import FRAMED_MAX_TOKENS, SketchSampling
from pice_tune.preference import CandidateSampling, PairRule
from pice_tune.recipe import DEFAULT_TARGETS, Recipe

DEFAULT_WORKDIR = Path("tune-out")
# DPO's learning rate for a LoRA: a quarter of supervised training's.
PREFERENCE_LR = 5e-5


@dataclass(frozen=True)
class Role:
    """What an adapter is for, and the file names its steps default to, so an expander run
    and a sketcher run in one workdir do not overwrite each other."""

    data: str
    run: str
    base_model: str  # trained from (its GGUF dequantised to a Hugging Face checkpoint)
    model: str  # checked against at export (the GGUF it is served with)
    adapter: str
    merged: str


ROLES = {
    # The edge's expansions: trained on the 0.5B, served on its Q8_0 file by `pice edge serve`.
    "expander": Role(
        data="data-v1.jsonl",
        run="run",
        base_model=Recipe().base_model,
        model="qwen2.5-coder-0.5b-instruct-q8_0",
        adapter="adapter.gguf",
        merged="merged.gguf",
    ),
    # The cloud's outlines: trained on and served with the 1.5B cloud model (vLLM
    # --enable-lora with the peft dir, or the embedded llama.cpp cloud with the GGUF).
    "sketcher": Role(
        data="sketch-v1.jsonl",
        run="run-sketcher",
        base_model="qwen2.5-coder-1.5b-instruct",
        model="qwen2.5-coder-1.5b-instruct",
        adapter="sketcher-adapter.gguf",
        merged="sketcher-merged.gguf",
    ),
    # A preference round for the edge: pairs of its own candidates, the ensemble's choice
    # over one it would not show (pice_tune.preference), trained with DPO.
    "preference": Role(
        data="pairs-v1.jsonl",
        run="run-preference",
        base_model=Recipe().base_model,
        model="qwen2.5-coder-0.5b-instruct-q8_0",
        adapter="preference-adapter.gguf",
        merged="preference-merged.gguf",
    ),
}


def _add_role(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        choices=sorted(ROLES),
        default="expander",
        help="expander: the edge's point expansions (default); sketcher: the cloud's outlines; "
        "preference: a DPO round on pairs of the edge's own candidates",
    )


def _role(args: argparse.Namespace) -> Role:
    return ROLES[args.role]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tune", help="fine-tune the edge model or the cloud's sketcher (LoRA)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="where each step writes (tune-out)"
    )
    steps = parser.add_subparsers(dest="tune_command", required=True)

    data = steps.add_parser("data", help="distil teacher outputs into a versioned JSONL")
    _add_role(data)
    data.add_argument("--questions", type=Path, help="JSONL of questions (default: bundled)")
    data.add_argument("--cloud-url", help="OpenAI base URL of the teacher (default: embedded)")
    data.add_argument(
        "--cloud-model",
        default="qwen2.5-coder-1.5b-instruct",
        help="teacher model (the embedded cloud's, or the name sent to --cloud-url)",
    )
    data.add_argument("--cloud-api-key")
    data.add_argument("--threads", type=int, default=2, help="embedded cloud's threads (2)")
    data.add_argument("--limit", type=int, help="only the first N training questions")
    data.add_argument(
        "--out", type=Path, help="dataset file (WORKDIR/data-v1.jsonl; sketcher: sketch-v1.jsonl)"
    )
    sampling = SketchSampling()
    data.add_argument(
        "--samples",
        type=int,
        default=sampling.samples,
        help=f"sketcher: sketches per question, the first greedy ({sampling.samples})",
    )
    data.add_argument(
        "--temperature",
        type=float,
        default=sampling.temperature,
        help=f"sketcher: temperature of the other samples ({sampling.temperature})",
    )
    data.add_argument("--seed", type=int, default=sampling.seed, help="sampling seed (0)")
    data.add_argument(
        "--frame",
        action="store_true",
        help="sketcher: ask for and learn the framed sketch (an opening line, the outline, a "
        "closing sentence: progressive.frame); default: the outline alone",
    )
    candidates = CandidateSampling()
    data.add_argument(
        "--candidates",
        type=int,
        default=candidates.k,
        help=f"preference: candidates per point, the first greedy ({candidates.k})",
    )
    data.add_argument(
        "--candidate-temperature",
        type=float,
        default=candidates.temperature,
        help=f"preference: temperature of the other candidates ({candidates.temperature})",
    )
    data.add_argument(
        "--outlines",
        type=Path,
        help="preference: the expander's dataset, whose raw cache holds the outlines "
        "(WORKDIR/data-v1.jsonl)",
    )
    data.add_argument(
        "--length-ratio",
        type=float,
        default=None,
        help="preference: a pair decided by the score alone needs the shorter text to have at "
        "least this share of the longer's words (default: any lengths)",
    )
    data.add_argument(
        "--verdicts",
        type=Path,
        help="preference: the judge's verdicts on the candidates (benchmarks/judge_candidates.py "
        "on the raw cache of --out); they decide the pairs the data filters leave, instead of "
        "the ensemble's score",
    )
    data.add_argument("--edge-url", help="preference: the edge agent asked (default: embedded)")
    data.add_argument(
        "--edge-model",
        default=ROLES["preference"].model,
        help="preference: the edge's model (embedded, or as the agent at --edge-url names it)",
    )
    data.add_argument("--edge-api-key")
    data.set_defaults(handler=_data)

    defaults = Recipe()
    train = steps.add_parser("train", help="train a LoRA adapter (resumes from checkpoints)")
    _add_role(train)
    train.add_argument(
        "--data", type=Path, help="dataset (WORKDIR/data-v1.jsonl; sketcher: sketch-v1.jsonl)"
    )
    train.add_argument(
        "--base-model",
        help=f"model to train (expander: {defaults.base_model}; "
        f"sketcher: {ROLES['sketcher'].base_model})",
    )
    train.add_argument("--max-steps", type=int, default=defaults.max_steps)
    train.add_argument("--rank", type=int, default=defaults.rank)
    train.add_argument("--alpha", type=float, default=defaults.alpha)
    train.add_argument("--dropout", type=float, default=defaults.dropout)
    train.add_argument(
        "--lr",
        type=float,
        help=f"learning rate ({defaults.lr}; preference: {PREFERENCE_LR}, as DPO moves a "
        "model further per step than its loss suggests)",
    )
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--seq-len", type=int, default=defaults.seq_len)
    train.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--val-share",
        type=float,
        default=defaults.val_share,
        help="share of the questions held out for a validation loss at every checkpoint; "
        "the adapter is then the checkpoint where it was lowest (default 0: none)",
    )
    train.add_argument("--save-every", type=int, default=50, help="checkpoint interval (50)")
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    train.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    train.add_argument("--venv", type=Path, help="tuning environment (.venv-tune)")
    train.add_argument("--fresh", action="store_true", help="drop checkpoints, start over")
    train.add_argument(
        "--beta",
        type=float,
        default=0.1,
        help="preference: DPO's beta, how far from the reference the model may move (0.1)",
    )
    train.add_argument(
        "--init-adapter",
        type=Path,
        help="preference: continue this peft adapter (e.g. WORKDIR/run/adapter, the expander's); "
        "it is also the reference (default: a new LoRA on the base model)",
    )
    train.set_defaults(handler=_train)

    export = steps.add_parser("export", help="write the llama.cpp LoRA adapter GGUF")
    _add_role(export)
    export.add_argument(
        "--model",
        "--edge-model",
        dest="model",
        help="the model (GGUF) the adapter is checked against and served with (expander: "
        f"{ROLES['expander'].model}; sketcher: {ROLES['sketcher'].model}); --edge-model is "
        "the older name",
    )
    export.add_argument(
        "--out",
        type=Path,
        help="output (WORKDIR/adapter.gguf, with --merged WORKDIR/merged.gguf; "
        "sketcher: sketcher-adapter.gguf, sketcher-merged.gguf)",
    )
    export.add_argument(
        "--merged",
        action="store_true",
        help="write the edge model with the adapter folded into its weights (a plain model for "
        "pice edge serve --model: no per-token cost) instead of the adapter",
    )
    export.add_argument(
        "--scale", type=float, default=1.0, help="with --merged: the adapter's scale (1.0)"
    )
    export.add_argument("--venv", type=Path, help="tuning environment (.venv-tune)")
    export.set_defaults(handler=_export)

    encoder = steps.add_parser(
        "router-encoder", help="fine-tune the router's sentence encoder (LoRA factors, .npz)"
    )
    encoder.add_argument(
        "--out",
        type=Path,
        help="factors to write (WORKDIR/encoder-lora.npz; the shipped file "
        "is src/pice_gateway/router/encoder-lora.npz)",
    )
    encoder.add_argument(
        "--data", type=Path, nargs="+", help="training JSONL (the router's train.jsonl)"
    )
    encoder.add_argument("--epochs", type=int, default=3)
    encoder.add_argument("--rank", type=int, default=8)
    encoder.add_argument("--lr", type=float, default=5e-4)
    encoder.add_argument("--seed", type=int, default=0)
    encoder.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    encoder.add_argument(
        "--layers", type=int, help="keep the encoder's first N of its 6 blocks (all)"
    )
    encoder.add_argument("--venv", type=Path, help="tuning environment (.venv-tune)")
    encoder.set_defaults(handler=_router_encoder)


def _data_path(args: argparse.Namespace) -> Path:
    return Path(args.workdir) / _role(args).data


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.workdir) / _role(args).run


def _data(args: argparse.Namespace) -> int:
    from pice_tune.steps import DataOptions, run_data

    manifest = run_data(
        DataOptions(
            out=args.out or _data_path(args),
            questions=args.questions,
            cloud_url=args.cloud_url,
            cloud_model=args.cloud_model,
            cloud_api_key=args.cloud_api_key,
            threads=args.threads,
            limit=args.limit,
            role=args.role,
            sampling=SketchSampling(
                samples=args.samples,
                temperature=args.temperature,
                seed=args.seed,
                max_tokens=FRAMED_MAX_TOKENS if args.frame else SketchSampling.max_tokens,
                frame=args.frame,
            ),
            outlines=args.outlines or Path(args.workdir) / ROLES["expander"].data,
            edge_url=args.edge_url,
            edge_model=args.edge_model,
            edge_api_key=args.edge_api_key,
            candidates=CandidateSampling(
                k=args.candidates, temperature=args.candidate_temperature, seed=args.seed
            ),
            pair_rule=PairRule(length_ratio=args.length_ratio),
            verdicts=args.verdicts,
        )
    )
    sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    return 0


def _default_lr(role: str) -> float:
    return PREFERENCE_LR if role == "preference" else Recipe().lr


def _train(args: argparse.Namespace) -> int:
    from pice_tune.steps import TrainOptions, run_train

    recipe = Recipe(
        base_model=args.base_model or _role(args).base_model,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        lr=args.lr if args.lr is not None else _default_lr(args.role),
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        targets=tuple(t for t in args.targets.split(",") if t),
        seed=args.seed,
        val_share=args.val_share,
    )
    summary = run_train(
        TrainOptions(
            data=args.data or _data_path(args),
            run_dir=_run_dir(args),
            recipe=recipe,
            venv=args.venv,
            device=args.device,
            threads=args.threads,
            save_every=args.save_every,
            fresh=args.fresh,
            beta=args.beta,
            init_adapter=args.init_adapter,
        )
    )
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pice_tune.steps import run_export

    role = _role(args)
    default = role.merged if args.merged else role.adapter
    meta = run_export(
        _run_dir(args),
        args.out or Path(args.workdir) / default,
        args.model or role.model,
        venv=args.venv,
        merged=args.merged,
        scale=args.scale,
    )
    sys.stdout.write(json.dumps(meta, indent=2) + "\n")
    return 0


def _router_encoder(args: argparse.Namespace) -> int:
    from pice_tune.router_encoder import EncoderTuning, tune_encoder

    options = EncoderTuning(
        out=args.out or Path(args.workdir) / "encoder-lora.npz",
        epochs=args.epochs,
        rank=args.rank,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        layers=args.layers,
        venv=args.venv,
    )
    if args.data:
        options = dataclasses.replace(options, data=tuple(args.data))
    sys.stdout.write(json.dumps(tune_encoder(options), indent=2) + "\n")
    return 0
