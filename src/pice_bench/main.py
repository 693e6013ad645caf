"""``pice bench`` from parsed arguments to files on disk."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from pice.errors import PiceError
from pice_bench.modes import Endpoints
from pice_bench.questions import (
    Question,
    default_questions_path,
    load_questions,
    select_by_suitability,
    select_questions,
)
from pice_bench.records import Mode
from pice_bench.runner import JudgeSpec, LoadSpec, RunSpec, run
from pice_stack.supervisor import StackError

logger = logging.getLogger(__name__)

# Enough for the 1.5B cloud to finish nearly every answer to this bench's questions (its
# answers ran 200-400 words); a run reports the share that was still cut off per mode.
DEFAULT_MAX_TOKENS = 768
# Requests per load step: enough for a p95 that is not just the largest of a handful (issue
# #12: earlier runs had 6-8 per step). The arrival window (--load-seconds) still caps a step.
DEFAULT_LOAD_REQUESTS = 30
# Offered rates (req/s) of the sweep; at 30 requests a step lasts about 30 / rate seconds.
DEFAULT_RATES = "0.02,0.04,0.08"


def parse_modes(text: str) -> list[Mode]:
    try:
        return [Mode(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"unknown mode in {text!r}; modes: {[m.value for m in Mode]}") from exc


def parse_rates(text: str) -> tuple[float, ...]:
    rates = tuple(float(part) for part in text.split(",") if part.strip())
    if not rates or min(rates) <= 0:
        raise SystemExit(f"--rates needs positive numbers, got {text!r}")
    return rates


def quick_pick(questions: Sequence[Question], *, suitable: int, other: int) -> list[Question]:
    """A handful from different categories: ``suitable`` that suit points, ``other`` not."""
    spread = select_questions(questions, per_category=1)
    pool = spread + [q for q in questions if q not in spread]
    return [q for q in pool if q.suits_points][:suitable] + [q for q in pool if not q.suits_points][
        :other
    ]


def first_model(base_url: str, api_key: str | None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=10.0)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


@contextlib.contextmanager
def systems_under_test(
    args: argparse.Namespace,
) -> Iterator[tuple[Endpoints, dict[str, Any], dict[str, Any] | None]]:
    """The given URLs, or a testbed started here and stopped on exit; with its core plan and
    the gateway's effective settings (``None`` for a system this run did not start)."""
    if args.gateway_url or args.cloud_url:
        cloud_model = args.cloud_model_name
        if args.cloud_url and cloud_model is None:
            cloud_model = first_model(args.cloud_url, args.cloud_api_key)
        endpoints = Endpoints(
            gateway_url=args.gateway_url,
            cloud_url=args.cloud_url,
            cloud_model=cloud_model or "",
            api_key=args.api_key,
            cloud_api_key=args.cloud_api_key,
        )
        yield endpoints, {"note": "external system: cores not managed by pice bench"}, None
        return
    from pice_bench.stack import BenchStackSpec, bench_stack
    from pice_gateway.placement.registry import PLACEMENT_POLICIES
    from pice_stack.profile import load_profile

    if args.placement is not None and args.placement not in PLACEMENT_POLICIES:
        known = ", ".join(sorted(PLACEMENT_POLICIES))
        raise ValueError(f"unknown --placement {args.placement!r}; known: {known}")

    spec = BenchStackSpec(
        profile=load_profile(args.profile) if args.profile else None,
        placement=args.placement,
        placement_rate=args.placement_rate,
        cloud=args.cloud,
        cloud_model=args.cloud_model,
        edge_model=args.edge_model,
        edges=args.edges,
        threads=args.threads,
        pin=args.pin,
        log_dir=args.out / "logs",
        vllm_venv=args.vllm_venv,
        sketch_lora=args.sketch_lora,
        edge_lora=args.edge_lora,
        edge_lora_scale=args.edge_lora_scale,
        edge_lora_merge=args.edge_lora_merge,
    )
    with bench_stack(spec) as stack:
        yield stack.endpoints, stack.cores, stack.gateway


def build_spec(
    args: argparse.Namespace,
    endpoints: Endpoints,
    questions: list[Question],
    cores: dict[str, Any],
    gateway: dict[str, Any] | None = None,
) -> RunSpec:
    quick = bool(args.quick)
    modes = parse_modes(args.modes)
    judge = None
    if not (args.no_judge or args.load_only):  # a load sweep alone has no answers to judge
        judge_url = args.judge_url or endpoints.cloud_url
        if judge_url is None:
            logger.warning("no judge: give --judge-url (there is no cloud URL to default to)")
        else:
            judge_key = args.judge_api_key if args.judge_url else endpoints.cloud_api_key
            judge = JudgeSpec(
                base_url=judge_url,
                model=args.judge_model or first_model(judge_url, judge_key),
                api_key=judge_key,
                candidates=tuple(parse_modes(args.judge_modes)),
                calibrate=args.calibrate_judge,
                expected_grades=args.judge_grades == "expected",
            )
    load = None
    if not args.no_load:
        load = LoadSpec(
            rates=parse_rates(args.rates or ("0.1" if quick else DEFAULT_RATES)),
            max_count=args.load_requests or (3 if quick else DEFAULT_LOAD_REQUESTS),
            # No window by default: every step sends all its requests, however long that takes.
            max_duration=args.load_seconds or (20.0 if quick else math.inf),
            suits_only=not args.load_all_questions,
            modes=tuple(parse_modes(args.load_modes)) if args.load_modes else (),
        )
    return RunSpec(
        questions=questions,
        modes=modes,
        endpoints=endpoints,
        max_tokens=args.max_tokens or (96 if quick else DEFAULT_MAX_TOKENS),
        slo_seconds=args.slo_seconds or (90.0 if quick else 120.0),
        out_dir=args.out,
        judge=judge,
        load=load,
        seed=args.seed,
        latency=not args.load_only,
        config={
            "argv": sys.argv[1:],
            "quick": quick,
            "gateway_url": endpoints.gateway_url,
            "cloud_url": endpoints.cloud_url,
            "cloud_model": endpoints.cloud_model,
            "cloud": "external" if (args.gateway_url or args.cloud_url) else args.cloud,
            "edge_model": None if (args.gateway_url or args.cloud_url) else args.edge_model,
            # The edges started: a profile sets their number, not ``--edges``.
            "edges": None
            if (args.gateway_url or args.cloud_url)
            else len(cores.get("edges", [])) or args.edges,
            "profile": None if (args.gateway_url or args.cloud_url) else args.profile,
            "placement": None if (args.gateway_url or args.cloud_url) else args.placement,
            "cores": cores,
            # The gateway's effective settings (``progressive``, ``router``, ...) when this run
            # started it; an external system's are not known here.
            "gateway_settings": gateway,
            "judge_model": judge.model if judge else None,
            "judge_url": judge.base_url if judge else None,
            # Who judges: with no --judge-url, the cloud model grades its own answers.
            "judge_is_cloud": judge is not None and not args.judge_url,
            "rates": list(load.rates) if load else [],
        },
    )


def main(args: argparse.Namespace) -> int:
    # One log line per request would bury the progress bars.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        questions = load_questions(args.questions or default_questions_path())
        if args.quick:
            questions = quick_pick(questions, suitable=2, other=1)
        if args.suitable is not None:
            questions = select_by_suitability(
                questions, suitable=args.suitable, unsuitable=args.unsuitable
            )
        questions = select_questions(questions, per_category=args.per_category, limit=args.limit)
        with systems_under_test(args) as (endpoints, cores, gateway):
            spec = build_spec(args, endpoints, questions, cores, gateway)
            logger.info(
                "benchmarking %d questions on %s", len(questions), [m.value for m in spec.modes]
            )
            _, files = run(spec)
    except (PiceError, StackError, httpx.HTTPError, ValueError) as exc:
        logger.error("pice bench failed: %s", exc)
        return 1
    for path in files:
        logger.info("wrote %s", path)
    return 0
