"""One benchmark run against running systems: latency, quality, then load; results on disk."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from pice_bench.calibration import calibrate
from pice_bench.judge import Judge
from pice_bench.load import run_load_step
from pice_bench.modes import Endpoints, Systems
from pice_bench.plots import write_plots
from pice_bench.questions import Question
from pice_bench.records import Mode, Phase, RequestRecord
from pice_bench.report import render_markdown
from pice_bench.results import BenchResults, nan_to_none
from pice_bench.schedule import load_schedule, mode_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeSpec:
    base_url: str
    model: str
    api_key: str | None = None
    candidates: tuple[Mode, ...] = (Mode.PICE,)
    # Also measure the judge on the calibration pairs (:mod:`pice_bench.calibration`).
    calibrate: bool = False
    # Grades as expectations over the judge's token probabilities (pice_bench.expected_grades).
    expected_grades: bool = True


@dataclass(frozen=True)
class LoadSpec:
    rates: tuple[float, ...]
    max_count: int
    max_duration: float
    suits_only: bool = True
    # The modes to load; empty = every mode of the run.
    modes: tuple[Mode, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    questions: Sequence[Question]
    modes: Sequence[Mode]
    endpoints: Endpoints
    max_tokens: int
    slo_seconds: float
    out_dir: Path
    request_timeout: float = 600.0
    judge: JudgeSpec | None = None
    load: LoadSpec | None = None
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    # The one-at-a-time pass over every question (latency, answers to judge); off for a load
    # sweep alone, whose schedule may then draw on many questions at no extra cost.
    latency: bool = True


def _client(timeout: float) -> httpx.AsyncClient:
    # No pool limit: open-loop load must never queue in the client, only in the servers.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )


async def run_latency(
    systems: Systems, spec: RunSpec, results: BenchResults
) -> dict[tuple[str, Mode], RequestRecord]:
    """Every question on every mode, one request at a time.

    Modes alternate per question (not mode after mode), so a drift in machine load during the
    run lands on every mode alike, in an order shuffled per question (seeded, recorded as each
    record's ``position``), so no mode always runs after another on a warm prefix cache.
    """
    by_key: dict[tuple[str, Mode], RequestRecord] = {}
    with tqdm(total=len(spec.questions) * len(spec.modes), desc="latency", unit="req") as bar:
        for question in spec.questions:
            for position, mode in enumerate(mode_order(spec.modes, question.id, seed=spec.seed)):
                answer = await systems.answer_fn(mode)(question)
                record = RequestRecord.of(mode, Phase.LATENCY, question, answer)
                record.position = position
                if answer.error:
                    logger.warning("%s on %s failed: %s", mode.value, question.id, answer.error)
                results.requests.append(record)
                by_key[(question.id, mode)] = record
                bar.set_postfix_str(f"{mode.value} {answer.latency_s:.1f}s")
                bar.update()
    return by_key


async def run_judging(
    client: httpx.AsyncClient,
    spec: RunSpec,
    answers: dict[tuple[str, Mode], RequestRecord],
    results: BenchResults,
) -> None:
    judge_spec = spec.judge
    if judge_spec is None:
        return
    judge = Judge(
        client,
        judge_spec.base_url,
        judge_spec.model,
        judge_spec.api_key,
        expected=judge_spec.expected_grades,
    )
    if judge_spec.calibrate:
        logger.info("calibrating the judge %s", judge_spec.model)
        results.judge_calibration = await calibrate(judge.grade)
    if Mode.CLOUD not in spec.modes:
        return
    pairs = [
        (q, cand)
        for q in spec.questions
        for cand in judge_spec.candidates
        if cand in spec.modes and answers[(q.id, cand)].ok and answers[(q.id, Mode.CLOUD)].ok
    ]
    for q, cand in tqdm(pairs, desc="judging", unit="pair"):
        candidate, baseline = answers[(q.id, cand)].answer, answers[(q.id, Mode.CLOUD)].answer
        record = await judge.judge_pair(q, cand, candidate.text, Mode.CLOUD, baseline.text)
        record.candidate_cut, record.baseline_cut = candidate.cut_off, baseline.cut_off
        results.judgments.append(record)


async def run_load(systems: Systems, spec: RunSpec, results: BenchResults) -> None:
    load = spec.load
    if load is None:
        return
    questions = [q for q in spec.questions if q.suits_points or not load.suits_only]
    questions = questions or list(spec.questions)
    # One schedule per rate, built before any mode runs and shared by all of them: every mode
    # gets the same questions at the same offsets (recorded by fingerprint in the results).
    schedules = {
        rate: load_schedule(
            questions, rate, max_count=load.max_count, max_duration=load.max_duration,
            seed=spec.seed,
        )
        for rate in sorted(load.rates)
    }  # fmt: skip
    results.config["load_schedules"] = {
        f"{rate:g}": {
            "requests": len(s),
            "window_s": s.offsets[-1],
            "fingerprint": s.fingerprint(lambda q: q.id),
        }
        for rate, s in schedules.items()
    }
    for mode in load.modes or spec.modes:
        for rate, schedule in schedules.items():
            # A request still running this long after its step began is past any SLO worth
            # measuring.
            deadline = schedule.offsets[-1] + 3 * spec.slo_seconds
            with tqdm(
                desc=f"load {mode.value} @ {rate:g}/s", total=len(schedule), unit="req"
            ) as bar:
                step, records = await run_load_step(
                    mode,
                    systems.answer_fn(mode),
                    schedule,
                    deadline_s=deadline,
                    on_done=lambda: bar.update(),
                )
            results.load_steps.append(step)
            results.requests += records
            logger.info(
                "%s @ %.3g req/s: %d/%d ok, p95 %.1f s", mode.value, rate, step.completed,
                step.sent, step.p95_s,
            )  # fmt: skip
            if not step.sustained(spec.slo_seconds):
                break  # higher rates only cost time: the sweep is over for this mode


def write_outputs(results: BenchResults, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(
        json.dumps(nan_to_none(results.to_json()), indent=1, allow_nan=False, ensure_ascii=False)
    )
    md_path = out_dir / "results.md"
    md_path.write_text(render_markdown(results))
    return [json_path, md_path, *write_plots(results, out_dir)]


async def run_bench(spec: RunSpec) -> BenchResults:
    results = BenchResults(
        config={**spec.config, "slo_seconds": spec.slo_seconds, "max_tokens": spec.max_tokens,
                "questions": len(spec.questions), "modes": [m.value for m in spec.modes],
                "seed": spec.seed, "mode_order": "shuffled per question (seeded)",
                "latency_pass": spec.latency,
                "started_unix": time.time()},
    )  # fmt: skip
    async with _client(spec.request_timeout) as client:
        systems = Systems(client, spec.endpoints, max_tokens=spec.max_tokens)
        missing = [m for m in spec.modes if m not in systems.available()]
        if missing:
            # sot-cloud needs the cloud's own URL, the PICE modes a gateway: run the others.
            logger.warning("skipping %s: no URL to run them against", [m.value for m in missing])
            spec = replace(spec, modes=[m for m in spec.modes if m not in missing])
            results.config["modes"] = [m.value for m in spec.modes]
        if spec.latency:
            answers = await run_latency(systems, spec, results)
            await run_judging(client, spec, answers, results)
        await run_load(systems, spec, results)
    results.config["finished_unix"] = time.time()
    return results


def run(spec: RunSpec) -> tuple[BenchResults, list[Path]]:
    results = asyncio.run(run_bench(spec))
    return results, write_outputs(results, spec.out_dir)
