"""Everything one run measured, and the aggregates computed from it (no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pice_bench.calibration import Calibration, OrderStats, judgment_diagnostics
from pice_bench.coverage import sketch_coverage, word_count
from pice_bench.judge import failed_calls
from pice_bench.records import JudgeRecord, Mode, Phase, RequestRecord
from pice_bench.stats import Summary, bootstrap_interval, percentile, ratio_below
from pice_bench.throughput import LoadStep, max_sustained_rate
from pice_bench.winrate import Outcome, WinRate

# The targets, checked against every run.
TARGET_P50_REDUCTION = 0.40
TARGET_THROUGHPUT_RATIO = 1.5
TARGET_NET_WIN_RATE = -0.1
# The win-rate group of suitable pairs in which the budget cut neither answer.
NEITHER_CUT = "suitable, neither cut"


@dataclass(frozen=True)
class ModeLatency:
    mode: Mode
    n: int
    errors: int
    latency: Summary
    ttft: Summary
    cloud_completion_tokens: float
    edge_completion_tokens: float
    cloud_prompt_tokens: float
    # Answers the token budget cut short (``Answer.cut_off``), and their share of ``n``.
    cut_off: int = 0

    @property
    def cut_off_share(self) -> float:
        return self.cut_off / self.n if self.n else math.nan


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def mode_latency(mode: Mode, records: Sequence[RequestRecord]) -> ModeLatency:
    ok = [r for r in records if r.ok]
    return ModeLatency(
        mode=mode,
        n=len(records),
        errors=len(records) - len(ok),
        latency=Summary.of([r.answer.latency_s for r in ok]),
        ttft=Summary.of([r.answer.ttft_s for r in ok if r.answer.ttft_s is not None]),
        cloud_completion_tokens=_mean([r.answer.tokens.cloud_completion for r in ok]),
        edge_completion_tokens=_mean([r.answer.tokens.edge_completion for r in ok]),
        cloud_prompt_tokens=_mean([r.answer.tokens.cloud_prompt for r in ok]),
        cut_off=sum(r.answer.cut_off for r in ok),
    )


@dataclass(frozen=True)
class PointMiss:
    """One sketch point that the answer did not really expand (see :mod:`.coverage`)."""

    question_id: str
    index: int
    title: str
    why: str


@dataclass(frozen=True)
class CoverageSummary:
    mode: Mode
    answers_with_points: int
    all_points_covered: int  # answers in which every point passed
    points: int
    points_covered: int
    words: Summary
    failures: list[PointMiss] = field(default_factory=list)

    @property
    def points_share(self) -> float:
        return self.points_covered / self.points if self.points else math.nan


@dataclass
class BenchResults:
    config: dict[str, Any]
    requests: list[RequestRecord] = field(default_factory=list)
    judgments: list[JudgeRecord] = field(default_factory=list)
    load_steps: list[LoadStep] = field(default_factory=list)
    judge_calibration: Calibration | None = None

    # -- selections -------------------------------------------------------------------------
    def modes(self) -> list[Mode]:
        seen = {r.mode for r in self.requests} | {s.mode for s in self.load_steps}
        return [m for m in Mode if m in seen]

    def latency_records(
        self, mode: Mode, where: Callable[[RequestRecord], bool] = lambda r: True
    ) -> list[RequestRecord]:
        return [
            r for r in self.requests if r.mode is mode and r.phase is Phase.LATENCY and where(r)
        ]

    def mode_orders(self) -> dict[str, list[str]]:
        """Per question, the modes in the order they ran (latency phase)."""
        slots: dict[str, list[tuple[int, str]]] = {}
        for r in self.requests:
            if r.phase is Phase.LATENCY and r.position is not None:
                slots.setdefault(r.question_id, []).append((r.position, r.mode.value))
        return {qid: [m for _, m in sorted(s)] for qid, s in slots.items()}

    def categories(self) -> list[str]:
        return sorted({r.category for r in self.requests if r.phase is Phase.LATENCY})

    # -- aggregates -------------------------------------------------------------------------
    def latency_by_mode(self, *, suits_only: bool) -> list[ModeLatency]:
        return [
            mode_latency(m, self.latency_records(m, lambda r: r.suits_points or not suits_only))
            for m in self.modes()
        ]

    def latency_by_category(self) -> dict[str, dict[Mode, Summary]]:
        return {
            cat: {
                m: Summary.of(
                    [
                        r.answer.latency_s
                        for r in self.latency_records(m)
                        if r.ok and r.category == cat
                    ]
                )
                for m in self.modes()
            }
            for cat in self.categories()
        }

    def steps_of(self, mode: Mode) -> list[LoadStep]:
        return sorted((s for s in self.load_steps if s.mode is mode), key=lambda s: s.rate)

    def max_sustained(self, slo_s: float) -> dict[Mode, float | None]:
        return {
            m: max_sustained_rate(self.steps_of(m), slo_s) for m in self.modes() if self.steps_of(m)
        }

    def judged_groups(self, candidate: Mode) -> dict[str, list[JudgeRecord]]:
        """``candidate``'s judged pairs per category, then ``all``, ``suitable``, ``other`` and
        ``suitable, neither cut`` (pairs where the budget cut neither answer)."""
        judged = [j for j in self.judgments if j.candidate is candidate]
        groups: dict[str, list[JudgeRecord]] = {}
        for j in judged:
            groups.setdefault(j.category, []).append(j)
        groups = dict(sorted(groups.items()))
        groups["all"] = judged
        selections: list[tuple[str, Callable[[JudgeRecord], bool]]] = [
            ("suitable", lambda j: j.suits_points),
            ("other", lambda j: not j.suits_points),
            (NEITHER_CUT, lambda j: j.suits_points and not (j.candidate_cut or j.baseline_cut)),
        ]
        for label, keep in selections:
            if selected := [j for j in judged if keep(j)]:
                groups[label] = selected
        return groups

    def win_rates(self, candidate: Mode) -> dict[str, WinRate]:
        """Net win rate of ``candidate`` per group of :meth:`judged_groups`."""
        return {
            k: WinRate.of(Outcome(j.outcome) for j in group)
            for k, group in self.judged_groups(candidate).items()
        }

    def win_rate_intervals(self, candidate: Mode) -> dict[str, tuple[float, float]]:
        """A 95% bootstrap interval of each group's net win rate, resampling its questions."""
        return {
            k: bootstrap_interval(
                [Outcome(j.outcome) for j in group],
                lambda sample: WinRate.of(sample).net,
                seed=self.seed,
            )
            for k, group in self.judged_groups(candidate).items()
        }

    def latency_ratio(self, mode: Mode, *, suits_only: bool) -> tuple[float, float, float]:
        """p50 latency of ``mode`` / p50 of cloud-only, over the questions both answered, with
        its 95% bootstrap interval (questions resampled, each keeping both latencies)."""
        base = {r.question_id: r.answer.latency_s for r in self.latency_records(Mode.CLOUD)
                if r.ok and (r.suits_points or not suits_only)}  # fmt: skip
        pairs = [
            (r.answer.latency_s, base[r.question_id])
            for r in self.latency_records(mode)
            if r.ok and r.question_id in base
        ]

        def ratio(sample: Sequence[tuple[float, float]]) -> float:
            p50_base = percentile([b for _, b in sample], 50)
            return percentile([m for m, _ in sample], 50) / p50_base if p50_base else math.nan

        low, high = bootstrap_interval(pairs, ratio, seed=self.seed)
        return (ratio(pairs) if pairs else math.nan), low, high

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    def judge_diagnostics(self, candidate: Mode) -> OrderStats:
        """Position-following, order agreement and grades of the run's own judgments."""
        return judgment_diagnostics([j for j in self.judgments if j.candidate is candidate])

    def judge_failures(self, candidate: Mode) -> int:
        """Judge calls for ``candidate`` that failed after their retries (ties, not verdicts)."""
        return failed_calls([j for j in self.judgments if j.candidate is candidate])

    def judged_candidates(self) -> list[Mode]:
        seen = {j.candidate for j in self.judgments}
        return [m for m in Mode if m in seen]

    def coverage(self) -> list[CoverageSummary]:
        """Per mode that answered in the latency phase (a mode run only under load has no
        row): its sketches' points expanded, and its answers' length."""
        rows = []
        for m in self.modes():
            if not (records := self.latency_records(m)):
                continue
            ok = [r for r in records if r.ok]
            with_points = [r for r in ok if r.answer.points]
            cov = [(r, sketch_coverage(r.answer.points, r.answer.text)) for r in with_points]
            rows.append(
                CoverageSummary(
                    mode=m,
                    answers_with_points=len(with_points),
                    all_points_covered=sum(c.complete for _, c in cov),
                    points=sum(c.points for _, c in cov),
                    points_covered=sum(c.covered for _, c in cov),
                    words=Summary.of([float(word_count(r.answer.text)) for r in ok]),
                    failures=[
                        PointMiss(r.question_id, i, title, why.value)
                        for r, c in cov
                        for i, title, why in c.failures
                    ],
                )
            )
        return rows

    # -- targets ----------------------------------------------------------------------------
    def p50_reduction(self, mode: Mode) -> float:
        """How far ``mode``'s p50 latency on suitable questions is below cloud-only's."""
        rows = {row.mode: row for row in self.latency_by_mode(suits_only=True)}
        if mode not in rows or Mode.CLOUD not in rows:
            return math.nan
        return ratio_below(rows[mode].latency.p50, rows[Mode.CLOUD].latency.p50)

    def throughput_ratio(self, mode: Mode, slo_s: float) -> float:
        sustained = self.max_sustained(slo_s)
        base, ours = sustained.get(Mode.CLOUD), sustained.get(mode)
        if not base or ours is None:
            return math.nan
        return ours / base

    def suitable_net_win_rate(self, candidate: Mode) -> float:
        rates = self.win_rates(candidate)
        return rates["suitable"].net if "suitable" in rates else math.nan

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        slo = float(self.config.get("slo_seconds", math.inf))
        return {
            "config": self.config,
            "summary": {
                "latency_suitable": [
                    _latency_json(r) for r in self.latency_by_mode(suits_only=True)
                ],
                "latency_all": [_latency_json(r) for r in self.latency_by_mode(suits_only=False)],
                "latency_by_category": {
                    cat: {m.value: asdict(s) for m, s in row.items()}
                    for cat, row in self.latency_by_category().items()
                },
                "max_sustained_rate": {m.value: v for m, v in self.max_sustained(slo).items()},
                "win_rates": {
                    c.value: {
                        k: {**asdict(w), "n": w.n, "net": w.net, "net_ci95": ci}
                        for (k, w), ci in zip(
                            self.win_rates(c).items(),
                            self.win_rate_intervals(c).values(),
                            strict=True,
                        )
                    }
                    for c in self.judged_candidates()
                },
                "latency_ratio_p50": {
                    group: {
                        m.value: dict(
                            zip(
                                ("ratio", "ci95_low", "ci95_high"),
                                self.latency_ratio(m, suits_only=suits),
                                strict=True,
                            )
                        )
                        for m in self.modes()
                        if m is not Mode.CLOUD
                    }
                    for group, suits in (("suitable", True), ("all", False))
                },
                "coverage": [
                    {**asdict(c), "points_share": c.points_share} for c in self.coverage()
                ],
            },
            "judge_calibration": _calibration_json(self.judge_calibration),
            "judge_diagnostics": {
                c.value: _orders_json(self.judge_diagnostics(c)) for c in self.judged_candidates()
            },
            "judge_failed_calls": {
                c.value: self.judge_failures(c) for c in self.judged_candidates()
            },
            "mode_orders": self.mode_orders(),
            "load_steps": [asdict(s) for s in self.load_steps],
            "requests": [r.to_json() for r in self.requests],
            "judgments": [j.to_json() for j in self.judgments],
        }


def _orders_json(stats: OrderStats) -> dict[str, Any]:
    return {**asdict(stats), "commonest_grade_share": stats.commonest_grade_share}


def _calibration_json(cal: Calibration | None) -> dict[str, Any] | None:
    if cal is None:
        return None
    return {**asdict(cal), "length_bias": cal.length_bias, "orders": _orders_json(cal.orders)}


def _latency_json(row: ModeLatency) -> dict[str, Any]:
    return {**asdict(row), "cut_off_share": row.cut_off_share}


def nan_to_none(value: Any) -> Any:
    """JSON has no NaN: replace it (recursively) with null so any parser reads the file."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value
