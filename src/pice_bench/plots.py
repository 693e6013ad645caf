"""PNG plots of a run (matplotlib, from the ``bench`` extra), drawn off-screen."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pice_bench.figures import figure
from pice_bench.results import BenchResults


def write_plots(results: BenchResults, out_dir: Path) -> list[Path]:
    """Latency vs arrival rate, per-category latency, throughput and net win rates with their
    intervals; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    slo = float(results.config.get("slo_seconds", math.inf))
    modes = results.modes()

    if results.load_steps:
        with figure(out_dir / "latency_vs_rate.png", size=(7, 4.5)) as (_, ax):
            for m in modes:
                steps = results.steps_of(m)
                if steps:
                    rates = [s.rate for s in steps]
                    ax.plot(rates, [s.p95_s for s in steps], marker="o", label=f"{m.value} p95")
                    ax.plot(
                        rates,
                        [s.p50_s for s in steps],
                        marker=".",
                        linestyle=":",
                        color=ax.lines[-1].get_color(),
                        label=f"{m.value} p50",
                    )
            if math.isfinite(slo):
                ax.axhline(slo, color="grey", linestyle="--", label=f"SLO {slo:g} s")
            _label(
                ax,
                x="offered load (requests/s, Poisson)",
                y="end-to-end latency (s)",
                title="Latency vs arrival rate",
            )
        written.append(out_dir / "latency_vs_rate.png")

        with figure(out_dir / "throughput.png", size=(7, 4.5)) as (_, ax):
            for m in modes:
                steps = results.steps_of(m)
                if steps:
                    ax.plot(
                        [s.rate for s in steps],
                        [s.achieved_rps for s in steps],
                        marker="o",
                        label=m.value,
                    )
            top = max(s.rate for s in results.load_steps)
            ax.plot([0, top], [0, top], color="grey", linestyle="--", label="offered = served")
            _label(ax, x="offered load (requests/s)", y="completed requests/s", title="Throughput")
        written.append(out_dir / "throughput.png")

    by_cat = results.latency_by_category()
    if by_cat:
        cats = list(by_cat)
        width = 0.8 / max(len(modes), 1)
        path = out_dir / "latency_by_category.png"
        with figure(path, size=(max(7.0, len(cats) * 0.9), 4.5)) as (_, ax):
            for i, m in enumerate(modes):
                xs = [c + i * width for c in range(len(cats))]
                ax.bar(xs, [by_cat[c][m].p50 for c in cats], width=width, label=m.value)
            ax.set_xticks([c + width * (len(modes) - 1) / 2 for c in range(len(cats))])
            ax.set_xticklabels(cats, rotation=30, ha="right")
            ax.set_ylabel("p50 latency (s), one request at a time")
            ax.set_title("Latency per category")
            ax.legend(fontsize="small")
            ax.grid(axis="y", alpha=0.3)
        written.append(path)

    for candidate in results.judged_candidates():
        wins = results.win_rates(candidate)
        cis = results.win_rate_intervals(candidate)
        groups = list(wins)
        path = out_dir / f"win_rate_{candidate.value}.png"
        with figure(path, size=(7, 0.6 + 0.35 * len(groups))) as (_, ax):
            ys = list(range(len(groups)))[::-1]
            nets = [wins[g].net for g in groups]
            lows = [n - cis[g][0] for n, g in zip(nets, groups, strict=True)]
            highs = [cis[g][1] - n for n, g in zip(nets, groups, strict=True)]
            ax.errorbar(nets, ys, xerr=[lows, highs], fmt="o", capsize=3)
            ax.axvline(0.0, color="grey", linestyle="--")
            ax.set_yticks(ys)
            ax.set_yticklabels([f"{g} (n={wins[g].n})" for g in groups], fontsize="small")
            ax.set_xlim(-1.05, 1.05)
            ax.set_xlabel("net win rate vs cloud-only (wins - losses) / n, 95% bootstrap CI")
            ax.set_title(f"Quality: {candidate.value} vs cloud-only")
            ax.grid(axis="x", alpha=0.3)
        written.append(path)
    return written


def _label(ax: Any, *, x: str, y: str, title: str) -> None:
    """The axes, title, legend and grid of a line plot over the offered load."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
