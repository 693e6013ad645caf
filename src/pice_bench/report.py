"""Markdown rendering of a run's results."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pice_bench.calibration import OrderStats
from pice_bench.coverage import MIN_NEW_WORDS
from pice_bench.records import Mode
from pice_bench.results import (
    TARGET_NET_WIN_RATE,
    TARGET_P50_REDUCTION,
    TARGET_THROUGHPUT_RATIO,
    BenchResults,
    ModeLatency,
)

# Listed failures in the markdown report (all of them are in results.json).
MAX_LISTED = 20


def fmt_s(value: float | None) -> str:
    """Seconds with two decimals; an en dash when there is no value."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}"


def fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def fmt_pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:+.0f} %"


def fmt_share(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:.0f} %"


def fmt_interval(low: float, high: float, *, signed: bool = False) -> str:
    """A bootstrap interval, e.g. "[-0.21, +0.05]"; an en dash when there is none."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"[{low:+.2f}, {high:+.2f}]" if signed else f"[{low:.2f}, {high:.2f}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; cells are already formatted strings."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio(results: BenchResults, mode: Mode, *, suits_only: bool) -> str:
    if mode is Mode.CLOUD:
        return "–"
    ratio, low, high = results.latency_ratio(mode, suits_only=suits_only)
    return f"{fmt_num(ratio, 2)} {fmt_interval(low, high)}"


def _latency_rows(
    results: BenchResults, rows: Sequence[ModeLatency], *, suits_only: bool
) -> list[list[str]]:
    base = next((r.latency.p50 for r in rows if r.mode is Mode.CLOUD), math.nan)
    return [
        [
            r.mode.value,
            str(r.n),
            str(r.errors),
            fmt_s(r.latency.p50),
            fmt_s(r.latency.p95),
            fmt_s(r.ttft.p50),
            fmt_s(r.ttft.p95),
            fmt_num(r.cloud_completion_tokens),
            fmt_num(r.edge_completion_tokens),
            f"{r.cut_off} ({fmt_share(r.cut_off_share)})",
            "–"
            if r.mode is Mode.CLOUD
            else fmt_pct(r.latency.p50 / base - 1 if base else math.nan),
            _ratio(results, r.mode, suits_only=suits_only),
        ]
        for r in rows
    ]


LATENCY_HEADER = (
    "mode",
    "n",
    "errors",
    "p50 latency s",
    "p95 latency s",
    "p50 TTFT s",
    "p95 TTFT s",
    "cloud out tokens",
    "edge out tokens",
    "cut off",
    "p50 vs cloud-only",
    "p50 / cloud-only p50, paired [95% CI]",
)


def _suitability(results: BenchResults, category: str) -> str:
    """How many of a category's questions suit points, e.g. "3/4"."""
    flags = {r.question_id: r.suits_points for r in results.requests if r.category == category}
    return f"{sum(flags.values())}/{len(flags)}"


def _served_as(results: BenchResults, mode: Mode) -> str:
    """How the system served the mode's answers, e.g. "progressive:outline ×5, cloud:direct ×1"."""
    counts = Counter(r.answer.served_mode or "–" for r in results.latency_records(mode) if r.ok)
    return ", ".join(f"{k} ×{n}" for k, n in counts.most_common())


def _orders_cells(stats: OrderStats | None) -> list[str]:
    if stats is None:
        return ["–"] * 5
    top = max(stats.grades, key=lambda g: stats.grades[g]) if stats.grades else None
    return [
        str(stats.pairs),
        fmt_share(stats.position_following),
        fmt_share(stats.order_agreement),
        fmt_num(stats.position_bonus, 2),
        "–" if top is None else f"{fmt_share(stats.commonest_grade_share)} (grade {top})",
    ]


def _judge_section(results: BenchResults) -> list[str]:
    """The judge's own figures: order statistics of the run's judgments, and calibration."""
    cal = results.judge_calibration
    candidates = results.judged_candidates()
    if cal is None and not candidates:
        return []
    cfg = results.config
    who = f"`{cfg.get('judge_model', '?')}`"
    if cfg.get("judge_is_cloud"):
        who += ": the cloud model itself, grading its own answers against PICE's"
    out = ["", "## Judge", "", f"Judge: {who}.", ""]
    labels = ["pairs (both orders)", "verdict follows the position", "orders agree",
              "position bonus (grade A − B)", "commonest grade"]  # fmt: skip
    columns = [(f"run: {c.value} vs cloud-only", results.judge_diagnostics(c)) for c in candidates]
    if cal is not None:
        columns.append(("calibration pairs", cal.orders))
    cells = [_orders_cells(stats) for _, stats in columns]
    rows = [[label, *[c[i] for c in cells]] for i, label in enumerate(labels)]
    out.append(table(["measure", *[name for name, _ in columns]], rows))
    failures = {c.value: results.judge_failures(c) for c in candidates}
    if failures:
        listed = ", ".join(f"{mode} {n}" for mode, n in failures.items())
        warn = " (counted as ties: judge again)" if any(failures.values()) else ""
        out += ["", f"Judge calls that failed after their retries: {listed}{warn}."]
    if cal is not None:
        out += ["", "Calibration on hand-made pairs:", ""]
        out.append(
            table(
                ["measure", "value"],
                [
                    [
                        "known better answer wins, both orders combined",
                        f"{fmt_share(cal.accuracy)} of {cal.known_better}",
                    ],
                    [
                        "known better answer wins, one order alone",
                        fmt_share(cal.single_order_accuracy),
                    ],
                    [
                        "padded (not better) answer beats the original: length bias",
                        f"{cal.padded_wins} of {cal.padded_pairs} ({fmt_share(cal.length_bias)}); "
                        f"original wins {cal.original_wins}",
                    ],
                ],
            )
        )
    return out


def _target(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "not met")


def _latency_section(results: BenchResults, modes: Sequence[Mode]) -> list[str]:
    out: list[str] = []
    out += ["## Latency, one request at a time, questions that suit points", ""]
    out.append(
        table(
            LATENCY_HEADER,
            _latency_rows(results, results.latency_by_mode(suits_only=True), suits_only=True),
        )
    )
    out += ["", "## Latency, one request at a time, all questions", ""]
    out.append(
        table(
            LATENCY_HEADER,
            _latency_rows(results, results.latency_by_mode(suits_only=False), suits_only=False),
        )
    )

    by_cat = results.latency_by_category()
    if by_cat:
        out += ["", "## Latency per category, one request at a time: p50 / p95 (s)", ""]
        out.append(
            table(
                ["category", "suit points", *[m.value for m in modes]],
                [
                    [
                        cat,
                        _suitability(results, cat),
                        *[f"{fmt_s(row[m].p50)} / {fmt_s(row[m].p95)}" for m in modes],
                    ]
                    for cat, row in by_cat.items()
                ],
            )
        )
    return out


def render_markdown(results: BenchResults) -> str:
    slo = float(results.config.get("slo_seconds", math.inf))
    modes = results.modes()
    out: list[str] = ["# PICE benchmark results", ""]
    cfg = results.config
    out.append(
        "Run: "
        + ", ".join(
            f"{k}={cfg[k]}"
            for k in (
                "cloud",
                "cloud_model",
                "edge_model",
                "edges",
                "profile",
                "placement",
                "max_tokens",
                "questions",
                "slo_seconds",
            )
            if k in cfg
        )
    )
    out.append("")

    # ``--load-only``: no one-at-a-time pass, so no latency tables, checks or targets of it.
    latency_pass = bool(cfg.get("latency_pass", True))
    if not latency_pass:
        out += ["No one-at-a-time latency pass in this run (`--load-only`): load steps only."]
    else:
        out += _latency_section(results, modes)

    if results.load_steps:
        out += ["", f"## Throughput: open-loop Poisson arrivals, SLO p95 ≤ {slo:g} s", ""]
        schedules = cfg.get("load_schedules") or {}
        if schedules:
            # The same fingerprint in two runs means the same arrivals (placement comparisons).
            out.append(
                "Arrival schedule per rate, the same for every mode: "
                + "; ".join(
                    f"{rate}/s: {entry['requests']} requests over {entry['window_s']:.0f} s "
                    f"(fingerprint `{entry['fingerprint']}`)"
                    for rate, entry in schedules.items()
                )
            )
            out.append("")
        rows = [
            [
                s.mode.value,
                fmt_num(s.rate, 3),
                str(s.sent),
                str(s.completed),
                str(s.errors),
                fmt_s(s.p50_s),
                fmt_s(s.p95_s),
                fmt_num(s.achieved_rps, 3),
                "yes" if s.sustained(slo) else "no",
                f"{s.hedges} ({s.hedges_won})",
            ]
            for m in modes
            for s in results.steps_of(m)
        ]
        out.append(
            table(
                [
                    "mode",
                    "offered req/s",
                    "sent",
                    "done",
                    "errors",
                    "p50 s",
                    "p95 s",
                    "achieved req/s",
                    "within SLO",
                    "hedges (won)",
                ],
                rows,
            )
        )
        sustained = results.max_sustained(slo)
        out += ["", "Highest sustained rate per mode:", ""]
        out.append(
            table(
                ["mode", "max sustained req/s", "vs cloud-only"],
                [
                    [
                        m.value,
                        fmt_num(v, 3),
                        "–"
                        if m is Mode.CLOUD
                        else fmt_num(results.throughput_ratio(m, slo), 2) + "×",
                    ]
                    for m, v in sustained.items()
                ],
            )
        )

    for candidate in results.judged_candidates():
        rates = results.win_rates(candidate)
        cis = results.win_rate_intervals(candidate)
        out += ["", f"## Quality: {candidate.value} vs cloud-only, pairwise, both orders", ""]
        out.append(
            table(
                ["group", "n", "wins", "losses", "ties", "net win rate", "95% CI"],
                [
                    [
                        k,
                        str(w.n),
                        str(w.wins),
                        str(w.losses),
                        str(w.ties),
                        f"{w.net:+.2f}",
                        fmt_interval(*cis[k], signed=True),
                    ]
                    for k, w in rates.items()
                ],
            )
        )
        same = sum(1 for j in results.judgments if j.candidate is candidate and j.identical)
        if same:
            out += ["", f"{same} of these ties are identical answers (the same text as "
                        "cloud-only's, e.g. questions routed to the cloud), not shown to the "
                        "judge."]  # fmt: skip

    out += _judge_section(results)

    cov = results.coverage()
    if cov and latency_pass:
        out += ["", "## Cheap checks: sketch points expanded, answer length", ""]
        out.append(
            "A point counts as expanded when its body is there, adds at least "
            f"{MIN_NEW_WORDS} content words to its title and does not repeat an earlier "
            "point's body."
        )
        out.append("")
        out.append(
            table(
                [
                    "mode",
                    "served as",
                    "answers with a sketch",
                    "all points expanded",
                    "points expanded",
                    "p50 words",
                    "mean words",
                ],
                [
                    [
                        c.mode.value,
                        _served_as(results, c.mode),
                        str(c.answers_with_points),
                        str(c.all_points_covered),
                        f"{c.points_covered}/{c.points} ({fmt_share(c.points_share)})",
                        fmt_num(c.words.p50, 0),
                        fmt_num(c.words.mean, 0),
                    ]
                    for c in cov
                ],
            )
        )
        misses = [(c.mode, f) for c in cov for f in c.failures]
        if misses:
            out += [
                "",
                "Points not expanded"
                + (f" (first {MAX_LISTED})" if len(misses) > MAX_LISTED else "")
                + ":",
                "",
            ]
            out += [
                f'- {m.value}, {f.question_id}, point {f.index + 1} "{f.title}": {f.why}'
                for m, f in misses[:MAX_LISTED]
            ]

    out += ["", "## Targets", ""]
    reduction = results.p50_reduction(Mode.PICE)
    ratio = results.throughput_ratio(Mode.PICE, slo)
    win = results.suitable_net_win_rate(Mode.PICE)
    out.append(
        table(
            ["target", "measured", "status"],
            [
                [
                    f"PICE p50 ≥ {TARGET_P50_REDUCTION:.0%} below cloud-only (suitable)",
                    fmt_pct(-reduction if not math.isnan(reduction) else math.nan),
                    _target(None if math.isnan(reduction) else reduction >= TARGET_P50_REDUCTION),
                ],
                [
                    f"PICE sustained throughput ≥ {TARGET_THROUGHPUT_RATIO}× cloud-only",
                    fmt_num(ratio, 2) + ("×" if not math.isnan(ratio) else ""),
                    _target(None if math.isnan(ratio) else ratio >= TARGET_THROUGHPUT_RATIO),
                ],
                [
                    f"net win rate ≥ {TARGET_NET_WIN_RATE} (suitable)",
                    "–"
                    if math.isnan(win)
                    else f"{win:+.2f} "
                    + fmt_interval(*results.win_rate_intervals(Mode.PICE)["suitable"], signed=True),
                    _target(None if math.isnan(win) else win >= TARGET_NET_WIN_RATE),
                ],
            ],
        )
    )
    out.append("")
    return "\n".join(out)
