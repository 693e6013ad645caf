"""The three steps of ``pice tune``, each resumable: data, train, export.

Training and export run in the tuning environment (``.venv-tune``, made by
``scripts/setup-tune.sh``) as a subprocess of :mod:`pice_tune.worker`, as vLLM runs from its own
environment: the PICE environment never imports torch. The edge model's weights come from its
bundled GGUF, dequantised once into the Hugging Face checkpoint the vLLM path also uses
(:func:`pice.cloud.vllm.ensure_checkpoint`, under ``<cache>/hf``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edge_agent.engine.lora_merge import merge_lora
from pice.cloud.vllm import ensure_checkpoint
from pice.errors import ModelProvisioningError
from pice.models.provision import hash_file
from pice.models.registry import resolve_model
from pice_tune import worker
from pice_tune.dataset import (
    PairExample,
    SketchExample,
    TuneQuestion,
    read_dataset,
    training_record,
)
from pice_tune.distill import (
    SketchSampling,
    Teacher,
    TeacherConfig,
    build_dataset,
    build_sketch_dataset,
    load_raw_cache,
    raw_cache_path,
)
from pice_tune.preference import (
    CandidateSampling,
    EdgeConfig,
    EdgeSampler,
    PairRule,
    build_pair_dataset,
    load_verdicts,
    outlines_from,
)
from pice_tune.recipe import Recipe

logger = logging.getLogger(__name__)

VENV_ENV = "PICE_TUNE_VENV"
DEFAULT_VENV = Path(".venv-tune")
RECIPE_FILE = "recipe.json"


def find_tune_venv(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$PICE_TUNE_VENV``, else ``./.venv-tune``; it must exist."""
    configured = os.environ.get(VENV_ENV)
    venv = explicit or (Path(configured) if configured else DEFAULT_VENV)
    if not (venv / "bin" / "python").exists():
        raise ModelProvisioningError(
            f"no tuning environment at {venv}: create it with `make tune-env` "
            f"(scripts/setup-tune.sh), or set {VENV_ENV}"
        )
    return venv.absolute()


def run_worker(venv: Path, *args: str) -> str:
    """Run the worker in the tuning environment; its progress goes to our stderr."""
    argv = [str(venv / "bin" / "python"), worker.__file__, *args]
    result = subprocess.run(argv, check=False, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ModelProvisioningError(f"pice tune {args[0]} failed (exit {result.returncode})")
    return result.stdout


# -- data ------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_cloud(model: str, threads: int, run_dir: Path) -> Iterator[TeacherConfig]:
    """The embedded cloud ``pice up`` runs (llama.cpp), alone on a free port, as the teacher."""
    from pice_stack.stack import StackSpec, launch_stack

    host = "127.0.0.1"
    spec = StackSpec(
        cloud="edge",
        cloud_model=model,
        edges=0,
        host=host,
        cloud_port=_free_port(host),
        threads=threads,
        pin=False,
        gateway=False,
        run_dir=run_dir,
    )
    with launch_stack(spec) as stack:
        # The embedded cloud is an edge agent and requires the stack's per-run token.
        yield TeacherConfig(
            base_url=stack.cloud_base_url, model=stack.cloud_model, api_key=stack.cloud_api_key
        )


@contextlib.contextmanager
def edge_agent(
    url: str | None, model: str, api_key: str | None, threads: int, run_dir: Path
) -> Iterator[EdgeConfig]:
    """The edge agent at ``url``, or (None) an embedded one on ``model``, alone on a free port:
    the embedded cloud is an edge agent, and its ``/v1/expand`` is the edge's."""
    if url:
        yield EdgeConfig(url, model, api_key)
        return
    with embedded_cloud(model, threads, run_dir) as config:
        yield EdgeConfig(config.base_url.removesuffix("/v1"), config.model, config.api_key)


@dataclass(frozen=True)
class DataOptions:
    out: Path
    questions: Path | None = None
    cloud_url: str | None = None
    cloud_model: str = "qwen2.5-coder-1.5b-instruct"
    cloud_api_key: str | None = None
    threads: int = 2
    limit: int | None = None
    # "expander" (the edge's expansions), "sketcher" (the cloud's outlines) or "preference"
    # (pairs of the edge's own candidates, on the expander's outlines).
    role: str = "expander"
    sampling: SketchSampling = field(default_factory=SketchSampling)
    # Preference only: the expander data step's output, whose raw cache holds the outlines,
    # the edge asked for candidates (embedded when no URL) and how.
    outlines: Path | None = None
    edge_url: str | None = None
    edge_model: str = "qwen2.5-coder-0.5b-instruct-q8_0"
    edge_api_key: str | None = None
    candidates: CandidateSampling = field(default_factory=CandidateSampling)
    pair_rule: PairRule = field(default_factory=PairRule)
    # Preference only: the judge's verdicts on the candidates (benchmarks/judge_candidates.py),
    # which then decide the pairs the data filters leave; None: the ensemble's score decides.
    verdicts: Path | None = None


def run_data(options: DataOptions) -> dict[str, Any]:
    """Distil the questions into ``options.out``; returns the dataset's manifest."""
    from pice_tune.dataset import bundled_questions_path, load_questions

    questions_path = options.questions or bundled_questions_path()
    questions = load_questions(questions_path)
    if options.limit is not None:
        questions = [q for q in questions if q.split == "train"][: options.limit]

    @contextlib.contextmanager
    def teacher_config() -> Iterator[TeacherConfig]:
        if options.cloud_url:
            yield TeacherConfig(
                base_url=options.cloud_url, model=options.cloud_model, api_key=options.cloud_api_key
            )
        else:
            run_dir = options.out.parent / "cloud-logs"
            with embedded_cloud(options.cloud_model, options.threads, run_dir) as config:
                yield config

    if options.role == "preference":
        return _run_pair_data(options, questions, questions_path)

    with teacher_config() as config:
        teacher = Teacher(config)
        try:
            manifest = {
                "teacher": config.model,
                "teacher_url": config.base_url,
                "questions_file": questions_path.name,
                "questions_sha256": hash_file(questions_path),
                "prompts": "pice_gateway sketch (outline) + cloud expansion",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if options.role == "sketcher":
                manifest["prompts"] = (
                    "pice_gateway sketch (framed outline, allow_direct=False, frame=True)"
                    if options.sampling.frame
                    else "pice_gateway sketch (outline, allow_direct=False)"
                )
                return build_sketch_dataset(
                    teacher,
                    questions,
                    options.out,
                    sampling=options.sampling,
                    manifest=manifest,
                )
            return build_dataset(teacher, questions, options.out, manifest=manifest)
        finally:
            teacher.close()


def _run_pair_data(
    options: DataOptions, questions: Sequence[TuneQuestion], questions_path: Path
) -> dict[str, Any]:
    outlines_file = options.outlines
    if outlines_file is None:
        raise ModelProvisioningError("the preference data needs --outlines (the expander's data)")
    raw = load_raw_cache(raw_cache_path(outlines_file))
    if not raw:
        raise ModelProvisioningError(
            f"no outlines in {raw_cache_path(outlines_file)}: run the expander's data step first"
        )

    verdicts = None
    judged: dict[str, Any] = {}
    if options.verdicts is not None:
        if not options.verdicts.is_file():
            raise ModelProvisioningError(f"no verdicts file {options.verdicts}")
        verdicts = load_verdicts(options.verdicts)
        judged = {
            "verdicts": options.verdicts.name,
            "verdicts_sha256": hash_file(options.verdicts),
            "verdicts_used": len(verdicts),
        }

    with contextlib.ExitStack() as stack:
        # The edge starts only if a question's candidates are not in the cache yet.
        sampler = EdgeSampler(
            options.edge_model,
            options.candidates,
            lambda: stack.enter_context(
                edge_agent(
                    options.edge_url,
                    options.edge_model,
                    options.edge_api_key,
                    options.threads,
                    options.out.parent / "edge-logs",
                )
            ),
        )
        try:
            return build_pair_dataset(
                sampler,
                questions,
                outlines_from(raw),
                options.out,
                manifest={
                    "outlines": outlines_file.name,
                    "outlines_raw_sha256": hash_file(raw_cache_path(outlines_file)),
                    "questions_file": questions_path.name,
                    "questions_sha256": hash_file(questions_path),
                    "prompts": "edge_agent expansion prompt, k candidates per point",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    **judged,
                },
                rule=options.pair_rule,
                verdicts=verdicts,
            )
        finally:
            sampler.close()


# -- train -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    run_dir: Path
    recipe: Recipe
    venv: Path | None = None
    device: str = "auto"
    threads: int = 0
    save_every: int = 50
    fresh: bool = False
    # A preference dataset (pairs) trains with DPO: its beta, and the adapter it continues
    # (None: a new LoRA on the base model).
    beta: float = 0.1
    init_adapter: Path | None = None


class _OfQuestion(Protocol):
    @property
    def question_id(self) -> str: ...


_E = TypeVar("_E", bound=_OfQuestion)


def split_by_question(
    examples: Sequence[_E], share: float, seed: int
) -> tuple[list[_E], list[_E], list[str]]:
    """(training, validation, the validation questions' ids): ``share`` of the questions, drawn
    with ``seed``, hold out all their examples, so no question is on both sides (its points
    share a prompt and would leak)."""
    if share <= 0:
        return list(examples), [], []
    ids = sorted({e.question_id for e in examples})
    held = max(1, round(share * len(ids)))
    if held >= len(ids):
        raise ModelProvisioningError(
            f"--val-share {share} holds out all {len(ids)} questions; nothing is left to train on"
        )
    chosen = set(random.Random(seed).sample(ids, held))
    train = [e for e in examples if e.question_id not in chosen]
    val = [e for e in examples if e.question_id in chosen]
    return train, val, sorted(chosen)


def run_train(options: TrainOptions) -> dict[str, Any]:
    """Train (or resume) the adapter in ``run_dir``; returns the worker's summary."""
    examples, data_sha = read_dataset(options.data)
    frames = {e.framed for e in examples if isinstance(e, SketchExample)}
    if len(frames) > 1:
        raise ModelProvisioningError(
            f"{options.data} mixes framed and unframed sketches; a sketcher learns one form "
            "(pice tune data --role sketcher, with or without --frame)"
        )
    venv = find_tune_venv(options.venv)
    base = resolve_model(options.recipe.base_model)
    checkpoint = ensure_checkpoint(base, venv)
    run_dir = options.run_dir
    recorded_path = run_dir / RECIPE_FILE
    record: dict[str, Any] = {
        "recipe": options.recipe.to_json(),
        "data": str(options.data),
        "data_sha256": data_sha,
        "base_gguf_sha256": hash_file(base.path),
    }
    if frames:
        # Read by ``pice up --sketch-lora`` (pice_stack.sketch_lora) to frame the sketches.
        record["frame"] = frames.pop()
    preference = bool(examples) and all(isinstance(e, PairExample) for e in examples)
    if preference:
        record["method"] = {
            "dpo": {
                "beta": options.beta,
                "init_adapter": None if options.init_adapter is None else str(options.init_adapter),
            }
        }
    if recorded_path.exists() and not options.fresh:
        old = json.loads(recorded_path.read_text())
        if (
            old.get("data_sha256") != data_sha
            or not options.recipe.resumable_from(old["recipe"])
            or old.get("method") != record.get("method")
        ):
            raise ModelProvisioningError(
                f"{run_dir} holds a run with another recipe or data; pass --fresh to start over"
            )
    elif options.fresh and run_dir.exists():
        for old_checkpoint in run_dir.glob(worker.CHECKPOINT_PREFIX + "*"):
            shutil.rmtree(old_checkpoint, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    train, val, val_ids = split_by_question(examples, options.recipe.val_share, options.recipe.seed)
    if val:
        record["val_questions"] = val_ids
    recorded_path.write_text(json.dumps(record, indent=2) + "\n")
    train_file = run_dir / "train.jsonl"
    train_file.write_text("".join(json.dumps(training_record(e)) + "\n" for e in train))
    val_args: list[str] = []
    if val:
        val_file = run_dir / "val.jsonl"
        val_file.write_text("".join(json.dumps(training_record(e)) + "\n" for e in val))
        val_args = ["--val-data", str(val_file)]
    method_args: list[str] = []
    if preference:
        method_args = ["--beta", str(options.beta)]
        if options.init_adapter is not None:
            method_args += ["--init-adapter", str(options.init_adapter)]
    run_worker(
        venv,
        "dpo" if preference else "train",
        *("--model-dir", str(checkpoint), "--data", str(train_file), "--out", str(run_dir)),
        *method_args,
        *val_args,
        *options.recipe.worker_args(),
        *("--device", options.device, "--threads", str(options.threads)),
        *("--save-every", str(options.save_every)),
    )
    summary: dict[str, Any] = json.loads((run_dir / worker.SUMMARY_FILE).read_text())
    return summary


# -- export ----------------------------------------------------------------------------


def run_export(
    run_dir: Path,
    out: Path,
    model: str,
    venv: Path | None = None,
    *,
    merged: bool = False,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Write ``out`` and ``out.json`` (recipe, data hash, checks).

    ``out`` is the llama.cpp adapter checked against ``model``'s GGUF (the edge model for an
    expander, the cloud model for a sketcher), or with ``merged`` that model with the adapter
    (at ``scale``) folded into its weights and requantised to their type: a plain model for
    ``pice edge serve --model``, which costs nothing per token (docs/fine-tuning.md). The
    metadata also names the peft adapter directory (``peft_dir``), which vLLM loads as it is
    (``--enable-lora --lora-modules NAME=DIR``).
    """
    tune_venv = find_tune_venv(venv)
    record = json.loads((run_dir / RECIPE_FILE).read_text())
    summary = json.loads((run_dir / worker.SUMMARY_FILE).read_text())
    target = resolve_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    common = ("--adapter-dir", str(run_dir / "adapter"), "--base-gguf", str(target.path))
    if merged:
        # The adapter GGUF first (checked against the model by the worker), then folded into
        # the model's weights here, exactly as `pice edge serve --lora-merge` folds one.
        with tempfile.TemporaryDirectory(prefix="pice-merge-") as scratch:
            adapter = Path(scratch) / "adapter.gguf"
            argv = ("export", *common, "--out", str(adapter), "--name", out.stem)
            exported = json.loads(run_worker(tune_venv, *argv))
            folded = merge_lora(target.path, adapter, out, scale)
        report = {
            "architecture": exported["architecture"],
            "rank": folded.rank,
            "alpha": folded.alpha,
            "scale": scale,
            "merged_weights": folded.merged_weights,
            "largest_change": folded.largest_change,
        }
        kind = f"merged GGUF ({target.name} + adapter at scale {scale}, requantised)"
    else:
        argv = ("export", *common, "--out", str(out), "--name", out.stem)
        report = json.loads(run_worker(tune_venv, *argv))
        kind = "llama.cpp LoRA adapter (GGUF, general.type=adapter)"
    meta = {
        "adapter": out.name,
        "adapter_sha256": hash_file(out),
        "format": kind,
        "checked_against": {"model": target.name, "sha256": hash_file(target.path)},
        "peft_dir": str((run_dir / "adapter").absolute()),
        "recipe": record["recipe"],
        "data": record["data"],
        "data_sha256": record["data_sha256"],
        # A sketcher: whether it learnt the framed sketch (opening, outline, closing).
        "frame": bool(record.get("frame", False)),
        "trained_from_gguf_sha256": record["base_gguf_sha256"],
        "training": summary,
        "export": report,
    }
    adapter_meta_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def adapter_meta_path(adapter: Path) -> Path:
    return adapter.with_name(adapter.name + ".json")
