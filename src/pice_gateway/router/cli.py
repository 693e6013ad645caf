"""``pice router train`` and ``pice router eval``: reproduce and measure the shipped router."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("router", help="train or evaluate the outline/direct router")
    commands = parser.add_subparsers(dest="router_command", required=True)

    pull = commands.add_parser("pull", help="download and verify the router's encoder files")
    pull.add_argument("--cache-dir", type=Path, default=None)
    pull.set_defaults(handler=_pull)

    train = commands.add_parser("train", help="train the router head (writes weights JSON)")
    train.add_argument("--train", type=Path, default=None, help="training JSONL")
    train.add_argument("--dev", type=Path, default=None, help="development JSONL (threshold)")
    train.add_argument("--out", type=Path, default=None, help="weights JSON to write")
    train.add_argument("--version", default="router-v3.2")
    cut = train.add_mutually_exclusive_group()
    cut.add_argument(
        "--tune-threshold",
        action="store_true",
        help="the most accurate cut on the development set (default: 0.5, the head's own)",
    )
    cut.add_argument(
        "--deploy-outline-share",
        type=float,
        default=None,
        metavar="P",
        help="move the cut to a class prior of P outline questions (shipped: 0.3602, LIMA's)",
    )
    train.add_argument(
        "--exit-blocks",
        type=_blocks,
        default=(),
        metavar="N,M",
        help="fit an early-exit head after each of these encoder blocks (shipped: 2,4)",
    )
    train.add_argument(
        "--exit-confidence",
        type=float,
        default=0.95,
        help="an exit decides when its head is at least this sure either way",
    )
    train.add_argument("--cache-dir", type=Path, default=None)
    train.set_defaults(handler=_train)

    ev = commands.add_parser("eval", help="agreement with labels, interval, latency")
    ev.add_argument(
        "data", type=Path, nargs="+", help="labelled JSONL file(s), or SoT's router.csv files"
    )
    ev.add_argument("--weights", type=Path, default=None)
    ev.add_argument("--threshold", type=float, default=None)
    ev.add_argument(
        "--no-early-exit",
        action="store_true",
        help="run every question through the whole encoder and the final head",
    )
    ev.add_argument("--out", type=Path, default=None, help="write the evaluation as JSON")
    ev.add_argument(
        "--no-error-text",
        action="store_true",
        help="name each error by its index in the set, not its text (sets you do not publish)",
    )
    ev.add_argument("--cache-dir", type=Path, default=None)
    ev.set_defaults(handler=_eval)


def _blocks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected block numbers like 2,4, not {text!r}") from None


def _encoder(cache_dir: Path | None, exits: tuple[int, ...] = ()) -> Any:
    from pice_gateway.router.assets import provision_encoder
    from pice_gateway.router.encoder import SentenceEncoder

    return SentenceEncoder(provision_encoder(cache_dir, exits=exits))


def _pull(args: argparse.Namespace) -> int:
    from pice_gateway.router.assets import provision_encoder
    from pice_gateway.router.model import RouterWeights

    # The shipped weights' exit stages too, so a gateway started offline has all it runs.
    files = provision_encoder(args.cache_dir, exits=RouterWeights.load().exit_blocks)
    sys.stdout.write(f"router encoder: {files.onnx}\nrouter tokenizer: {files.tokenizer}\n")
    for stage in files.stages:
        sys.stdout.write(f"router encoder stage: {stage}\n")
    return 0


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")


def _train(args: argparse.Namespace) -> int:
    from pice_gateway.router.model import BUNDLED_WEIGHTS
    from pice_gateway.router.training import DATA_DIR, train

    encoder = _encoder(args.cache_dir, args.exit_blocks)
    weights = train(
        encoder.embed_stages,
        args.train or DATA_DIR / "train.jsonl",
        args.dev or DATA_DIR / "dev.jsonl",
        version=args.version,
        log=_log,
        tune_threshold=args.tune_threshold,
        deploy_outline_share=args.deploy_outline_share,
        exits=args.exit_blocks,
        exit_confidence=args.exit_confidence,
    )
    out = args.out or BUNDLED_WEIGHTS
    weights.save(out)
    sys.stdout.write(f"wrote {out}: {json.dumps(weights.meta)}\n")
    return 0


def _set_name(path: Path) -> str:
    # SoT's label files are all router.csv: their folder names the set.
    return f"{path.parent.name}/{path.name}" if path.suffix == ".csv" else path.name


def _eval(args: argparse.Namespace) -> int:
    from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
    from pice_gateway.router.training import evaluate, load_examples

    weights = RouterWeights.load(args.weights or BUNDLED_WEIGHTS)
    if args.no_early_exit:
        weights = replace(weights, exits=())
    encoder = _encoder(args.cache_dir, weights.exit_blocks)
    encoder.embed("warm-up")  # the first run of an ONNX session allocates; do not time it
    results: dict[str, Any] = {
        "weights": weights.version,
        "threshold": args.threshold,
        "exit_blocks": list(weights.exit_blocks),
    }
    out = sys.stdout
    out.write(
        "| data | n | agreement | 95% CI | outline->direct | direct->outline | p50 ms | p95 ms "
        "| decided at |\n"
    )
    out.write("|---|---|---|---|---|---|---|---|---|\n")
    for path in args.data:
        result = evaluate(load_examples(path), encoder.embed_stages, weights, args.threshold)
        lo, hi = result.ci95
        exits = ", ".join(f"{k} {v}" for k, v in result.exits.items())
        out.write(
            f"| {_set_name(path)} | {result.n} | {result.accuracy:.3f} | {lo:.3f}–{hi:.3f} | "
            f"{result.confusion['outline->direct']} | {result.confusion['direct->outline']} | "
            f"{result.latency_ms_p50:.2f} | {result.latency_ms_p95:.2f} | {exits} |\n"
        )
        report = result.as_dict()
        if args.no_error_text:
            report["errors"] = [
                {k: v for k, v in e.items() if k != "question"} for e in result.errors
            ]
        results[str(path)] = report
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0
